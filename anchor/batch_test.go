package anchor

import (
	"testing"
	"time"
)

func TestBatchPolicy(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b := batch{max: 3, delay: 10 * time.Second}
	if b.ready(t0.Add(time.Hour)) {
		t.Error("an empty batch is ready")
	}
	b.add(t0, []byte("a"))
	b.add(t0.Add(9*time.Second), []byte("b")) // the delay runs from the oldest leaf
	tests := []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{9999 * time.Millisecond, false},
		{10 * time.Second, true},
		{time.Hour, true},
	}
	for _, tt := range tests {
		if got := b.ready(t0.Add(tt.at)); got != tt.want {
			t.Errorf("ready %v after the oldest leaf = %v, want %v", tt.at, got, tt.want)
		}
	}
	if b.room() != 1 {
		t.Errorf("room = %d, want 1", b.room())
	}
	b.add(t0.Add(time.Second), []byte("c"))
	if !b.ready(t0.Add(time.Second)) || b.room() != 0 {
		t.Errorf("a full batch: ready %v, room %d; want true, 0", b.ready(t0.Add(time.Second)), b.room())
	}
	b.clear()
	if b.len() != 0 || b.ready(t0.Add(time.Hour)) {
		t.Error("a cleared batch is not empty")
	}
	b.add(t0.Add(time.Hour), []byte("d"))
	if b.ready(t0.Add(time.Hour + 5*time.Second)) {
		t.Error("the delay of a new batch runs from the clear, not from the old batch")
	}
}

func TestBackoff(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b := backoff{base: time.Second}
	if !b.ready(t0) {
		t.Fatal("a fresh backoff is not ready")
	}
	var waits []time.Duration
	for range 8 {
		waits = append(waits, b.fail(t0))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 32, 32}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Errorf("wait after failure %d = %v, want %v", i+1, waits[i], want[i]*time.Second)
		}
	}
	if b.ready(t0.Add(31*time.Second)) || !b.ready(t0.Add(32*time.Second)) {
		t.Error("ready before the wait ends, or not after")
	}
	b.reset()
	if !b.ready(t0) || b.fail(t0) != time.Second {
		t.Error("reset does not restart the backoff")
	}
}
