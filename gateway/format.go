package gateway

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// FHIR's general parameters (R4 http.html#parameters) the REST layer
// answers itself, before routing: _format (and the Accept header) choose
// the response format, JSON only here; _pretty=true indents JSON responses.
// Neither reaches a handler, so neither is ever taken for a search
// criterion.

// formatParams are the query parameters formatQuery takes out.
type formatParams struct {
	format    string // _format, "" when absent
	hasFormat bool
	pretty    bool
}

// takeFormatParams removes _format and _pretty from r's query, keeping the
// other parameters as sent, and returns them.
func takeFormatParams(r *http.Request) formatParams {
	var fp formatParams
	if r.URL.RawQuery == "" {
		return fp
	}
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || (key != "_format" && key != "_pretty") {
			kept = append(kept, part)
			continue
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			value = "\x00" // neither a known format nor "true"
		}
		switch key {
		case "_format":
			fp.format, fp.hasFormat = value, true
		case "_pretty":
			fp.pretty = value == "true"
		}
	}
	r.URL.RawQuery = strings.Join(kept, "&")
	return fp
}

// jsonFormat reports whether a _format value asks for FHIR JSON: json, or
// one of the JSON media types (with parameters such as fhirVersion).
func jsonFormat(f string) bool {
	f = strings.TrimSpace(f)
	if strings.EqualFold(f, "json") {
		return true
	}
	mt, _, err := mime.ParseMediaType(f)
	if err != nil {
		return false
	}
	switch mt {
	case fhirJSON, "application/json", "application/json+fhir":
		return true
	}
	return false
}

// acceptsJSON reports whether the Accept header values admit FHIR JSON:
// no header, or a media range with q > 0 that covers a JSON media type.
// A client that asks only for XML (or Turtle) gets a 406, not JSON it did
// not ask for.
func acceptsJSON(values []string) bool {
	seen := false
	for _, v := range values {
		for _, rng := range strings.Split(v, ",") {
			if strings.TrimSpace(rng) == "" {
				continue
			}
			seen = true
			mt, params, err := mime.ParseMediaType(rng)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			switch mt {
			case "*/*", "application/*", fhirJSON, "application/json", "application/json+fhir":
				return true
			}
		}
	}
	return !seen
}

// notAcceptable is the 406 of a request for a format other than JSON. It
// names the formats served, never the one asked for.
func notAcceptable() *fhirError {
	return failure(http.StatusNotAcceptable, "not-supported", "",
		"only FHIR JSON is served: Accept application/fhir+json, or _format=json")
}

// isJSONMedia reports whether a response Content-Type is JSON that
// _pretty indents.
func isJSONMedia(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == fhirJSON || mt == "application/json" || mt == "application/json+fhir"
}

// prettyWriter indents a JSON response with two spaces (json.Indent: the
// members in the order the handler wrote them, so the output is stable).
// A response of another type passes through unbuffered.
type prettyWriter struct {
	http.ResponseWriter
	decided bool
	buf     *bytes.Buffer // nil: passing through
	status  int
}

func (p *prettyWriter) decide() {
	if p.decided {
		return
	}
	p.decided = true
	if isJSONMedia(p.Header().Get("Content-Type")) {
		p.buf = &bytes.Buffer{}
	}
}

func (p *prettyWriter) WriteHeader(code int) {
	p.decide()
	if p.buf == nil {
		p.ResponseWriter.WriteHeader(code)
		return
	}
	if p.status == 0 {
		p.status = code
	}
}

func (p *prettyWriter) Write(b []byte) (int, error) {
	p.decide()
	if p.buf == nil {
		return p.ResponseWriter.Write(b)
	}
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return p.buf.Write(b)
}

// finish writes the buffered response, indented when it is JSON.
func (p *prettyWriter) finish() {
	if p.buf == nil {
		return
	}
	out := p.buf.Bytes()
	if len(bytes.TrimSpace(out)) > 0 {
		var indented bytes.Buffer
		if err := json.Indent(&indented, out, "", "  "); err == nil {
			out = indented.Bytes()
		}
	}
	p.Header().Del("Content-Length")
	p.ResponseWriter.WriteHeader(p.status)
	_, _ = p.ResponseWriter.Write(out)
}
