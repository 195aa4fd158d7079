package cohort

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// exact releases true counts: no noise, no rounding.
var exact = Privacy{Noise: NoiseNone, RoundTo: 1}

func count(r Released) string {
	if r.Suppressed {
		return "S"
	}
	if r.Count == nil {
		return "nil"
	}
	return fmt.Sprint(*r.Count)
}

func TestValidate(t *testing.T) {
	good := []Privacy{
		{Key: testKey},
		{Noise: NoiseNone},
		{Threshold: 1, Noise: NoiseNone},
		{Noise: NoiseGaussian, Key: testKey}, // default scale
		{Key: testKey, OverlapScope: OverlapAll, OverlapHistory: 10},
		{Key: testKey, OverlapScope: OverlapOff},
		{Noise: NoiseLaplace, Scale: 2, Key: testKey, RoundTo: 5},
		{Noise: NoiseGaussian, Scale: 0.5, Key: testKey, RepeatLimit: 3, RepeatWindow: time.Hour},
	}
	for _, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	bad := map[string]Privacy{
		"negative threshold":    {Threshold: -1},
		"negative rounding":     {RoundTo: -5},
		"negative limit":        {RepeatLimit: -1},
		"negative window":       {RepeatWindow: -time.Hour},
		"unknown noise":         {Noise: "uniform", Scale: 1, Key: testKey},
		"noise without key":     {Noise: NoiseLaplace, Scale: 1},
		"short key":             {Noise: NoiseLaplace, Scale: 1, Key: []byte("short")},
		"default noise, no key": {},
		"none with a scale":     {Noise: NoiseNone, Scale: 1},
		"unknown scope":         {Key: testKey, OverlapScope: "everyone"},
		"negative history":      {Key: testKey, OverlapHistory: -1},
		"NaN scale":             {Noise: NoiseGaussian, Scale: math.NaN(), Key: testKey},
		"infinite scale":        {Noise: NoiseGaussian, Scale: math.Inf(1), Key: testKey},
		"scale without noise":   {Scale: 2},
	}
	for name, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, p)
		} else if strings.Contains(err.Error(), string(testKey)) {
			t.Errorf("%s: error shows the key", name)
		}
		if r := p.Release("fp", "", 500); !r.Suppressed {
			t.Errorf("%s: invalid config released %s", name, count(r))
		}
	}
}

func TestThreshold(t *testing.T) {
	for _, tt := range []struct {
		p    Privacy
		n    int
		want string
	}{
		{exact, 0, "0"},
		{exact, 1, "S"},
		{exact, 10, "S"},
		{exact, 11, "11"},
		{exact, 1234, "1234"},
		{Privacy{Noise: NoiseNone, RoundTo: 1, Threshold: 5}, 4, "S"},
		{Privacy{Noise: NoiseNone, RoundTo: 1, Threshold: 5}, 5, "5"},
		{Privacy{Noise: NoiseNone, RoundTo: 1, Threshold: 1}, 1, "1"},
		{Privacy{Noise: NoiseNone}, 12, "10"}, // rounds to 5 by default
		{Privacy{Noise: NoiseNone, RoundTo: 5}, 13, "15"},
		{Privacy{Noise: NoiseNone, RoundTo: 10}, 11, "10"},
	} {
		if got := count(tt.p.Release("fp", "", tt.n)); got != tt.want {
			t.Errorf("%+v.Release(%d) = %s, want %s", tt.p, tt.n, got, tt.want)
		}
	}
	b, _ := json.Marshal(exact.Release("fp", "", 3))
	if string(b) != `{"suppressed":true,"threshold":11}` {
		t.Errorf("suppressed JSON = %s", b)
	}
	b, _ = json.Marshal(exact.Release("fp", "", 0))
	if string(b) != `{"count":0}` {
		t.Errorf("zero JSON = %s", b)
	}
}

func TestNoise(t *testing.T) {
	for _, mech := range []string{NoiseLaplace, NoiseGaussian} {
		t.Run(mech, func(t *testing.T) {
			p := Privacy{Noise: mech, Scale: 3, Key: testKey, RoundTo: 1}
			other := p
			other.Key = []byte("another key of 16+ bytes........")
			same, differentKey, negative := 0, 0, 0
			var sum, sumSq float64
			const n = 2000
			for i := range n {
				fp := fmt.Sprintf("fingerprint-%d", i)
				a := p.Release(fp, "", 100)
				if a.Noise != mech || a.Count == nil {
					t.Fatalf("Release = %+v", a)
				}
				if b := p.Release(fp, "", 100); *a.Count != *b.Count {
					t.Fatalf("same fingerprint and cell gave %d then %d", *a.Count, *b.Count)
				}
				if c := other.Release(fp, "", 100); *c.Count != *a.Count {
					differentKey++
				}
				if c := p.Release(fp, `{"gender":"male"}`, 100); *c.Count == *a.Count {
					same++
				}
				d := float64(*a.Count - 100)
				sum += d
				sumSq += d * d
				if z := p.Release(fp, "", 0); *z.Count < 0 {
					negative++
				}
			}
			if differentKey < n/2 {
				t.Errorf("another key changed only %d of %d answers", differentKey, n)
			}
			if same > n/3 {
				t.Errorf("another cell kept the noise in %d of %d cases", same, n)
			}
			if negative > 0 {
				t.Errorf("%d negative counts", negative)
			}
			mean, sd := sum/n, math.Sqrt(sumSq/n)
			// Laplace b=3 has sd 3*sqrt(2) = 4.24; Gaussian sigma=3 has sd 3 (plus rounding).
			wantSD := 3.0
			if mech == NoiseLaplace {
				wantSD = 3 * math.Sqrt2
			}
			t.Logf("%s: mean %.3f sd %.3f (want ~0, ~%.2f)", mech, mean, sd, wantSD)
			if math.Abs(mean) > 0.5 || math.Abs(sd-wantSD) > 0.5 {
				t.Errorf("noise mean %.3f sd %.3f, want ~0 and ~%.2f", mean, sd, wantSD)
			}
		})
	}
	// Suppression uses the true count: noise cannot lift a 10 out of suppression
	// nor push an 11 into it.
	p := Privacy{Noise: NoiseLaplace, Scale: 50, Key: testKey, RoundTo: 5}
	for i := range 200 {
		fp := fmt.Sprint(i)
		if r := p.Release(fp, "", 10); !r.Suppressed {
			t.Fatalf("true 10 released as %s", count(r))
		}
		r := p.Release(fp, "", 11)
		if r.Suppressed || *r.Count < 0 || *r.Count%5 != 0 {
			t.Fatalf("true 11 released as %s", count(r))
		}
	}
}

// TestDefaultNoise: the zero Privacy with a key adds Gaussian noise of sigma
// DefaultScale, clamped to 3 sigma, and rounds to 5; the same fingerprint
// and cell always get the same answer.
func TestDefaultNoise(t *testing.T) {
	p := Privacy{Key: testKey}
	moved := 0
	for i := range 2000 {
		fp := fmt.Sprint("fp-", i)
		r := p.Release(fp, "", 100)
		if r.Noise != NoiseGaussian || r.RoundedTo != DefaultRoundTo || r.Count == nil {
			t.Fatalf("Release = %+v, want Gaussian noise rounded to %d", r, DefaultRoundTo)
		}
		if *r.Count%DefaultRoundTo != 0 || math.Abs(float64(*r.Count-100)) > gaussianClamp*DefaultScale+DefaultRoundTo/2.0 {
			t.Fatalf("released %d for 100: beyond the clamp and rounding", *r.Count)
		}
		if *r.Count != 100 {
			moved++
		}
		if again := p.Release(fp, "", 100); *again.Count != *r.Count {
			t.Fatalf("a repeat got %d, then %d", *r.Count, *again.Count)
		}
	}
	if moved < 500 {
		t.Errorf("noise moved only %d of 2000 counts off 100", moved)
	}
	if r := (Privacy{}).Release("fp", "", 100); !r.Suppressed {
		t.Errorf("default noise without a key released %s; want fail closed", count(r))
	}
}

func TestRepeatLimit(t *testing.T) {
	p := Privacy{}
	if p.Exceeded(6) || !p.Exceeded(7) || p.Window() != 30*24*time.Hour {
		t.Errorf("defaults: Exceeded(6)=%v Exceeded(7)=%v Window=%v", p.Exceeded(6), p.Exceeded(7), p.Window())
	}
	if p.Left(0) != 7 || p.Left(6) != 1 || p.Left(7) != 0 || p.Left(9) != 0 {
		t.Errorf("defaults: Left(0)=%d Left(6)=%d Left(7)=%d Left(9)=%d", p.Left(0), p.Left(6), p.Left(7), p.Left(9))
	}
	p = Privacy{RepeatLimit: 2, RepeatWindow: time.Hour}
	if p.Exceeded(1) || !p.Exceeded(2) || p.Window() != time.Hour || p.Left(1) != 1 || p.Left(2) != 0 {
		t.Error("configured limit not honoured")
	}
}

func cellsOf(spec string) []Cell {
	// "a=x,b=y:3 a=x,b=z:12"
	var cells []Cell
	for _, c := range strings.Fields(spec) {
		vals, n, _ := strings.Cut(c, ":")
		m := map[string]string{}
		for _, kv := range strings.Split(vals, ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		var cnt int
		fmt.Sscan(n, &cnt)
		cells = append(cells, Cell{Values: m, Count: cnt})
	}
	return cells
}

func TestReleaseBreakdown(t *testing.T) {
	for _, tt := range []struct {
		name, cells, want string
	}{
		{"nothing small", "g=f:20 g=m:30", "20 30"},
		{"one small: next smallest hidden too", "g=f:5 g=m:30 g=o:12", "S 30 S"},
		{"two small: nothing more", "g=f:5 g=m:30 g=o:3", "S 30 S"},
		{"single cell", "g=f:5", "S"},
		{"zeros are not suppressed nor complement", "g=f:5 g=m:0 g=o:40", "S 0 S"},
		{"ties: first smallest", "g=f:5 g=m:12 g=o:12", "S S 12"},
		{"cross-tab rows and columns",
			// f/young 3 is small: its row (g=f) and column (a=young) each get a partner,
			// then the partners' rows and columns need partners too.
			"a=old,g=f:40 a=old,g=m:30 a=young,g=f:3 a=young,g=m:50",
			"S S S S"},
		{"cross-tab with room",
			"a=mid,g=f:20 a=mid,g=m:25 a=old,g=f:40 a=old,g=m:30 a=young,g=f:3 a=young,g=m:50",
			"S S 40 30 S S"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := exact.ReleaseBreakdown("fp", cellsOf(tt.cells))
			var got []string
			for _, c := range out {
				got = append(got, count(c.Released))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("released %s, want %s", g, tt.want)
			}
			// No dimension row may hold exactly one suppressed cell next to a
			// released non-zero one.
			checkNoLoneSuppressed(t, out)
		})
	}
	// Noise in breakdowns is per cell and stable.
	p := Privacy{Noise: NoiseGaussian, Scale: 2, Key: testKey}
	cells := cellsOf("g=f:100 g=m:100")
	a, b := p.ReleaseBreakdown("fp", cells), p.ReleaseBreakdown("fp", cells)
	if *a[0].Count != *b[0].Count || *a[1].Count != *b[1].Count {
		t.Error("breakdown noise not stable")
	}
	if want := p.Release("fp", CellName(map[string]string{"g": "f"}), 100); *want.Count != *a[0].Count {
		t.Error("breakdown cell noise differs from Release of the same cell name")
	}
}

func checkNoLoneSuppressed(t *testing.T, out []ReleasedCell) {
	t.Helper()
	if len(out) == 0 {
		return
	}
	var dims []string
	for d := range out[0].Values {
		dims = append(dims, d)
	}
	for _, d := range dims {
		hidden, open := map[string]int{}, map[string]int{}
		for _, c := range out {
			k := rowKey(c.Values, dims, d)
			if c.Suppressed {
				hidden[k]++
			} else if *c.Count > 0 {
				open[k]++
			}
		}
		for k, n := range hidden {
			if n == 1 && open[k] > 0 {
				t.Errorf("row %q of %s has one suppressed cell", k, d)
			}
		}
	}
}
