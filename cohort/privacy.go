package cohort

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults of Privacy's zero fields.
const (
	DefaultThreshold      = 11 // PCORnet suppresses counts below 11
	DefaultNoise          = NoiseGaussian
	DefaultScale          = 3.0 // Gaussian sigma, in patients (SHRINE: 6.5 over far larger sites)
	DefaultRoundTo        = 5   // as SHRINE
	DefaultRepeatLimit    = 7   // SHRINE locks out after about 7 runs in 30 days
	DefaultRepeatWindow   = 30 * 24 * time.Hour
	DefaultOverlapScope   = OverlapAll
	DefaultOverlapHistory = 256
	minKeyBytes           = 16
	// gaussianClamp bounds Gaussian noise to ±gaussianClamp·Scale (SHRINE
	// clamps too), so a released count is never far from the truth.
	gaussianClamp = 3
)

// Noise mechanisms of Privacy.Noise.
const (
	NoiseDefault  = "" // DefaultNoise
	NoiseNone     = "none"
	NoiseLaplace  = "laplace"
	NoiseGaussian = "gaussian"
)

// Scopes of the overlap control (Privacy.OverlapScope): whose earlier
// releases a count is compared with.
const (
	OverlapClient = "client" // the asking client's own releases
	OverlapAll    = "all"    // every client's releases (stops colluding clients)
	OverlapOff    = "off"    // no overlap control
)

// Suppression reasons of Released.Reason. A count suppressed as a small
// cell (or as its complement) carries no reason, as before.
const (
	ReasonOverlap = "overlap"
)

// Privacy says how counts are released: small-cell suppression, keyed
// (cached) noise, rounding, a repeat limit per query shape and query-set
// overlap control (Index.Answer). The zero value suppresses counts 1..10,
// adds Gaussian noise of sigma 3 (which needs a Key), rounds to 5 and
// compares every count with the client's earlier releases.
type Privacy struct {
	// Threshold: true counts 1..Threshold-1 are suppressed, and so is a count
	// whose patients differ from those of an earlier release by 1..Threshold-1
	// patients. 0 means DefaultThreshold; 1 turns both off.
	Threshold int `yaml:"threshold" json:"threshold,omitempty"`
	// Noise is "" (DefaultNoise), "none", "laplace" or "gaussian".
	Noise string `yaml:"noise" json:"noise,omitempty"`
	// Scale is the Laplace b or the Gaussian sigma, in patients. 0 means
	// DefaultScale. Gaussian noise is clamped to ±3 sigma.
	Scale float64 `yaml:"scale" json:"scale,omitempty"`
	// RoundTo rounds released counts to a multiple of it. 0 means
	// DefaultRoundTo; 1 turns rounding off.
	RoundTo int `yaml:"roundTo" json:"roundTo,omitempty"`
	// Key keys the noise: the noise of a cell is a function of
	// HMAC-SHA256(Key, fingerprint, cell), so a repeated query gets the same
	// answer and averaging repeats gains nothing. Required (>= 16 bytes)
	// with noise; secret.
	Key []byte `yaml:"-" json:"-"`
	// RepeatLimit is the number of queries of one Shape a client may run per
	// RepeatWindow. 0 means DefaultRepeatLimit.
	RepeatLimit int `yaml:"repeatLimit" json:"repeatLimit,omitempty"`
	// RepeatWindow: 0 means DefaultRepeatWindow. It is also the overlap
	// control's window.
	RepeatWindow time.Duration `yaml:"repeatWindow" json:"repeatWindow,omitempty"`
	// OverlapScope is "" (DefaultOverlapScope), "client", "all" or "off":
	// whose earlier releases within RepeatWindow a count is compared with.
	OverlapScope string `yaml:"overlapScope" json:"overlapScope,omitempty"`
	// OverlapHistory bounds how many earlier releases (the newest within
	// the window) a count is compared with. 0 means DefaultOverlapHistory.
	OverlapHistory int `yaml:"overlapHistory" json:"overlapHistory,omitempty"`
}

func (p Privacy) withDefaults() Privacy {
	if p.Threshold == 0 {
		p.Threshold = DefaultThreshold
	}
	if p.Noise == NoiseDefault {
		p.Noise = DefaultNoise
	}
	if p.Noise != NoiseNone && p.Scale == 0 {
		p.Scale = DefaultScale
	}
	if p.RoundTo == 0 {
		p.RoundTo = DefaultRoundTo
	}
	if p.RepeatLimit == 0 {
		p.RepeatLimit = DefaultRepeatLimit
	}
	if p.RepeatWindow == 0 {
		p.RepeatWindow = DefaultRepeatWindow
	}
	if p.OverlapScope == "" {
		p.OverlapScope = DefaultOverlapScope
	}
	if p.OverlapHistory == 0 {
		p.OverlapHistory = DefaultOverlapHistory
	}
	return p
}

// Validate reports a configuration that would release counts unsafely or
// not at all. Zero fields take their defaults first, so the zero value
// needs a Key.
func (p Privacy) Validate() error {
	var errs []error
	if p.Noise == NoiseNone && p.Scale != 0 {
		errs = append(errs, errors.New("scale given without noise"))
	}
	p = p.withDefaults()
	if p.Threshold < 0 {
		errs = append(errs, errors.New("threshold must not be negative"))
	}
	if p.RoundTo < 0 {
		errs = append(errs, errors.New("roundTo must not be negative"))
	}
	if p.RepeatLimit < 0 {
		errs = append(errs, errors.New("repeatLimit must not be negative"))
	}
	if p.RepeatWindow < 0 {
		errs = append(errs, errors.New("repeatWindow must not be negative"))
	}
	if p.OverlapHistory < 0 {
		errs = append(errs, errors.New("overlapHistory must not be negative"))
	}
	switch p.OverlapScope {
	case OverlapClient, OverlapAll, OverlapOff:
	default:
		errs = append(errs, errors.New(`overlapScope must be "client", "all" or "off"`))
	}
	switch p.Noise {
	case NoiseNone:
	case NoiseLaplace, NoiseGaussian:
		if !(p.Scale > 0) || math.IsInf(p.Scale, 0) {
			errs = append(errs, errors.New("noise needs a positive, finite scale"))
		}
		if len(p.Key) < minKeyBytes {
			errs = append(errs, fmt.Errorf("noise needs a key of at least %d bytes", minKeyBytes))
		}
	default:
		errs = append(errs, errors.New(`noise must be "none", "laplace" or "gaussian"`))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cohort privacy: %w", err)
	}
	return nil
}

// Exceeded reports whether a client that already ran previous queries of the
// same Shape within the repeat window may not run another. The caller counts
// them (from its decision log) since time.Now().Add(-p.Window()).
func (p Privacy) Exceeded(previous int) bool {
	return previous >= p.withDefaults().RepeatLimit
}

// Left returns how many more queries of one Shape a client that already
// ran previous of them within the repeat window may run (never negative).
func (p Privacy) Left(previous int) int {
	return max(p.withDefaults().RepeatLimit-previous, 0)
}

// Window returns the repeat window in effect: the window of the repeat
// limit and of the overlap control.
func (p Privacy) Window() time.Duration { return p.withDefaults().RepeatWindow }

// Overlap returns the overlap control's scope and history bound in effect.
// The scope is OverlapOff when Threshold is 1 (nothing is small).
func (p Privacy) Overlap() (scope string, history int) {
	p = p.withDefaults()
	if p.Threshold <= 1 {
		return OverlapOff, p.OverlapHistory
	}
	return p.OverlapScope, p.OverlapHistory
}

// Released is a count as it may leave the gateway. A suppressed count has no
// Count, only the threshold it fell under and, when it was not small itself,
// the reason.
type Released struct {
	Count      *int   `json:"count,omitempty"`
	Suppressed bool   `json:"suppressed,omitempty"`
	Threshold  int    `json:"threshold,omitempty"` // set when suppressed
	Reason     string `json:"reason,omitempty"`    // ReasonOverlap, or none
	Noise      string `json:"noise,omitempty"`     // mechanism added to Count
	RoundedTo  int    `json:"roundedTo,omitempty"`
}

// released reports whether r gives a count.
func (r Released) released() bool { return !r.Suppressed && r.Count != nil }

// ReleasedCell is a breakdown cell as released.
type ReleasedCell struct {
	Values map[string]string `json:"values"`
	Released
}

// Release turns a true count n into a releasable one. fingerprint is
// Query.Fingerprint and cell names the cell ("" for the query's total).
// Suppression is decided on the true count; noise and rounding come after
// and the result is never negative. A configuration that fails Validate
// suppresses everything (fail closed).
func (p Privacy) Release(fingerprint, cell string, n int) Released {
	p = p.withDefaults()
	if p.Validate() != nil || n >= 1 && n < p.Threshold {
		return Released{Suppressed: true, Threshold: p.Threshold}
	}
	return p.perturb(fingerprint, cell, n)
}

func (p Privacy) perturb(fingerprint, cell string, n int) Released {
	var r Released
	x := float64(n)
	if p.Noise != NoiseNone {
		x += p.noise(fingerprint, cell)
		r.Noise = p.Noise
	}
	x = math.Round(x)
	if p.RoundTo > 1 {
		x = math.Round(x/float64(p.RoundTo)) * float64(p.RoundTo)
		r.RoundedTo = p.RoundTo
	}
	c := int(max(x, 0))
	r.Count = &c
	return r
}

// noise draws the noise of one cell from HMAC-SHA256(Key, fingerprint, cell).
func (p Privacy) noise(fingerprint, cell string) float64 {
	m := hmac.New(sha256.New, p.Key)
	m.Write([]byte("fhiranchor cohort noise v1\x00"))
	m.Write([]byte(fingerprint))
	m.Write([]byte{0})
	m.Write([]byte(cell))
	sum := m.Sum(nil)
	u1 := uniform(binary.BigEndian.Uint64(sum[0:8]))
	u2 := uniform(binary.BigEndian.Uint64(sum[8:16]))
	switch p.Noise {
	case NoiseLaplace:
		v := u1 - 0.5
		return -p.Scale * math.Copysign(1, v) * math.Log(1-2*math.Abs(v))
	case NoiseGaussian:
		z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
		return p.Scale * max(-gaussianClamp, min(gaussianClamp, z))
	}
	return 0
}

// uniform maps 64 random bits to (0, 1), never 0 or 1.
func uniform(x uint64) float64 {
	return (float64(x>>11) + 0.5) / (1 << 53)
}

// ReleaseBreakdown releases the cells of a breakdown. Besides the cells under
// the threshold, it suppresses complementary cells: wherever exactly one cell
// of a row (cells that differ in one dimension only) is suppressed, the
// smallest other cell of that row is suppressed too, so the hidden count
// cannot be recovered by subtracting the others from the row's total. This
// repeats until no row has a single suppressed cell it can pair. Cells are
// released in the order given.
func (p Privacy) ReleaseBreakdown(fingerprint string, cells []Cell) []ReleasedCell {
	p = p.withDefaults()
	valid := p.Validate() == nil
	hide := make([]bool, len(cells))
	for i, c := range cells {
		hide[i] = !valid || c.Count >= 1 && c.Count < p.Threshold
	}
	complement(cells, hide)
	return p.releaseCells(fingerprint, cells, hide, nil)
}

// releaseCells releases cells, hiding those hide marks; a hidden cell marked
// in overlap carries ReasonOverlap.
func (p Privacy) releaseCells(fingerprint string, cells []Cell, hide, overlap []bool) []ReleasedCell {
	out := make([]ReleasedCell, len(cells))
	for i, c := range cells {
		out[i].Values = c.Values
		switch {
		case hide[i]:
			out[i].Released = Released{Suppressed: true, Threshold: p.Threshold}
			if overlap != nil && overlap[i] {
				out[i].Reason = ReasonOverlap
			}
		default:
			out[i].Released = p.perturb(fingerprint, CellName(c.Values), c.Count)
		}
	}
	return out
}

// dimsOf returns the sorted dimension names of cells.
func dimsOf(cells []Cell) []string {
	var dims []string
	if len(cells) > 0 {
		for d := range cells[0].Values {
			dims = append(dims, d)
		}
		slices.Sort(dims)
	}
	return dims
}

// complement adds complementary suppressions to hide: wherever exactly one
// cell of a row is hidden, the smallest other non-empty cell is hidden too,
// until no row has a single hidden cell it can pair.
func complement(cells []Cell, hide []bool) {
	dims := dimsOf(cells)
	for changed := true; changed; {
		changed = false
		for _, d := range dims {
			for _, row := range rowsOf(cells, dims, d) {
				hidden, pick := 0, -1
				for _, i := range row {
					switch {
					case hide[i]:
						hidden++
					case cells[i].Count > 0 && (pick < 0 || cells[i].Count < cells[pick].Count):
						pick = i
					}
				}
				if hidden == 1 && pick >= 0 {
					hide[pick] = true
					changed = true
				}
			}
		}
	}
}

// rowsOf groups cells into their rows along dimension d, in a stable order
// (by the first cell of each row).
func rowsOf(cells []Cell, dims []string, d string) [][]int {
	at := map[string]int{}
	var rows [][]int
	for i, c := range cells {
		k := rowKey(c.Values, dims, d)
		j, ok := at[k]
		if !ok {
			j = len(rows)
			at[k] = j
			rows = append(rows, nil)
		}
		rows[j] = append(rows[j], i)
	}
	return rows
}

// rowKey names the row of a cell along dimension d: its values in every
// other dimension.
func rowKey(values map[string]string, dims []string, d string) string {
	var b strings.Builder
	for _, o := range dims {
		if o != d {
			b.WriteString(o)
			b.WriteByte(0)
			b.WriteString(values[o])
			b.WriteByte(0)
		}
	}
	return b.String()
}

// CellName is the canonical name of a cell, the cell argument of Release:
// a JSON object of its dimension values with sorted members.
func CellName(values map[string]string) string {
	b, _ := json.Marshal(values) // maps marshal with sorted keys; strings cannot fail
	return string(b)
}
