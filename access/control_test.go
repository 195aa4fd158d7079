package access_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/policy"
)

// revisionEngine decides allow, naming its revision.
type revisionEngine struct{ revision string }

func (e revisionEngine) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: true, PolicyRevision: e.revision, Reasons: []string{}}, nil
}

// TestActivationSwapsEngineAndVersionTogether reproduces the activation
// race: the engine and the stored version number used to be swapped in two
// steps, so a decision between them recorded the new revision with the old
// version. Run under -race (make test does) with activations and decisions
// interleaved: every decision's revision must be its version's.
func TestActivationSwapsEngineAndVersionTogether(t *testing.T) {
	c := access.New(access.Config{})
	c.Activate(revisionEngine{"rev-1"}, 1, "rev-1")
	ctx := context.Background()
	const activations = 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := c.Decide(ctx, nil, policy.Input{Action: "read"})
				if err != nil {
					errs <- err.Error()
					return
				}
				if want := "rev-" + strconv.FormatInt(out.PolicyVersion, 10); out.PolicyRevision != want {
					errs <- "decision by " + out.PolicyRevision + " recorded as version " + strconv.FormatInt(out.PolicyVersion, 10)
					return
				}
			}
		}()
	}
	for v := int64(2); v <= activations; v++ {
		c.Activate(revisionEngine{"rev-" + strconv.FormatInt(v, 10)}, v, "rev-"+strconv.FormatInt(v, 10))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := c.Active().Version; got != activations {
		t.Errorf("active version %d, want %d", got, activations)
	}
}

func TestDecideWithoutActivePolicyDenies(t *testing.T) {
	out, err := access.New(access.Config{}).Decide(context.Background(), nil, policy.Input{Action: "read"})
	if err != nil || out.Allow || len(out.Reasons) == 0 {
		t.Fatalf("no policy: %+v, %v; want a denial with a reason", out, err)
	}
}
