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
	DefaultThreshold    = 11 // PCORnet suppresses counts below 11
	DefaultRepeatLimit  = 7  // SHRINE locks out after about 7 runs in 30 days
	DefaultRepeatWindow = 30 * 24 * time.Hour
	minKeyBytes         = 16
)

// Noise mechanisms of Privacy.Noise.
const (
	NoiseNone     = ""
	NoiseLaplace  = "laplace"
	NoiseGaussian = "gaussian"
)

// Privacy says how counts are released: small-cell suppression, keyed
// (cached) noise, rounding and a repeat limit per query shape. The zero value
// suppresses counts 1..10 and adds no noise.
type Privacy struct {
	// Threshold: true counts 1..Threshold-1 are suppressed. 0 means
	// DefaultThreshold; 1 turns suppression off.
	Threshold int `yaml:"threshold" json:"threshold,omitempty"`
	// Noise is "" (none), "laplace" or "gaussian".
	Noise string `yaml:"noise" json:"noise,omitempty"`
	// Scale is the Laplace b or the Gaussian sigma, in patients.
	Scale float64 `yaml:"scale" json:"scale,omitempty"`
	// RoundTo rounds released counts to a multiple of it; 0 = no rounding.
	RoundTo int `yaml:"roundTo" json:"roundTo,omitempty"`
	// Key keys the noise: the noise of a cell is a function of
	// HMAC-SHA256(Key, fingerprint, cell), so a repeated query gets the same
	// answer and averaging repeats gains nothing. Required (>= 16 bytes)
	// with Noise; secret.
	Key []byte `yaml:"-" json:"-"`
	// RepeatLimit is the number of queries of one Shape a client may run per
	// RepeatWindow. 0 means DefaultRepeatLimit.
	RepeatLimit int `yaml:"repeatLimit" json:"repeatLimit,omitempty"`
	// RepeatWindow: 0 means DefaultRepeatWindow.
	RepeatWindow time.Duration `yaml:"repeatWindow" json:"repeatWindow,omitempty"`
}

func (p Privacy) withDefaults() Privacy {
	if p.Threshold == 0 {
		p.Threshold = DefaultThreshold
	}
	if p.RepeatLimit == 0 {
		p.RepeatLimit = DefaultRepeatLimit
	}
	if p.RepeatWindow == 0 {
		p.RepeatWindow = DefaultRepeatWindow
	}
	return p
}

// Validate reports a configuration that would release counts unsafely or
// not at all.
func (p Privacy) Validate() error {
	var errs []error
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
	switch p.Noise {
	case NoiseNone:
		if p.Scale != 0 {
			errs = append(errs, errors.New("scale given without noise"))
		}
	case NoiseLaplace, NoiseGaussian:
		if !(p.Scale > 0) || math.IsInf(p.Scale, 0) {
			errs = append(errs, errors.New("noise needs a positive, finite scale"))
		}
		if len(p.Key) < minKeyBytes {
			errs = append(errs, fmt.Errorf("noise needs a key of at least %d bytes", minKeyBytes))
		}
	default:
		errs = append(errs, errors.New(`noise must be "", "laplace" or "gaussian"`))
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

// Window returns the repeat window in effect.
func (p Privacy) Window() time.Duration { return p.withDefaults().RepeatWindow }

// Released is a count as it may leave the gateway. A suppressed count has no
// Count, only the threshold it fell under.
type Released struct {
	Count      *int   `json:"count,omitempty"`
	Suppressed bool   `json:"suppressed,omitempty"`
	Threshold  int    `json:"threshold,omitempty"` // set when suppressed
	Noise      string `json:"noise,omitempty"`     // mechanism added to Count
	RoundedTo  int    `json:"roundedTo,omitempty"`
}

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
	if p.RoundTo > 0 {
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
		return p.Scale * math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
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
	var dims []string
	if len(cells) > 0 {
		for d := range cells[0].Values {
			dims = append(dims, d)
		}
		slices.Sort(dims)
	}
	for changed := true; changed; {
		changed = false
		for _, d := range dims {
			rows := map[string][]int{}
			for i, c := range cells {
				rows[rowKey(c.Values, dims, d)] = append(rows[rowKey(c.Values, dims, d)], i)
			}
			for _, row := range rows {
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
	out := make([]ReleasedCell, len(cells))
	for i, c := range cells {
		out[i].Values = c.Values
		if hide[i] {
			out[i].Released = Released{Suppressed: true, Threshold: p.Threshold}
		} else {
			out[i].Released = p.perturb(fingerprint, CellName(c.Values), c.Count)
		}
	}
	return out
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
