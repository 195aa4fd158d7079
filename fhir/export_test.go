package fhir

// ParseJSONFormat is Parse with jsonformat deciding validity, as Parse did
// before validateTree: the oracle of the differential tests.
func (p *Parser) ParseJSONFormat(data []byte) (*Resource, error) { return p.parse(data, true) }
