package gateway

import (
	"context"
	"net/http"
)

// SetExportStageHook makes f run at the named stages of every export build
// ("selected", "files", "holds") until restore is called. Tests that use it
// must not run in parallel with other exporting tests.
func SetExportStageHook(f func(stage string)) (restore func()) {
	exportStageHook.Store(&f)
	return func() { exportStageHook.Store(nil) }
}

// SetTransactionHook makes f run inside the vault transaction of every
// Bundle, after its entries are written and before the commit, with the
// request's context, until restore is called.
func SetTransactionHook(f func(ctx context.Context)) (restore func()) {
	transactionHook.Store(&f)
	return func() { transactionHook.Store(nil) }
}

// SetSearchIndex turns the search tokens of writes on or off (on is the
// default) until restore is called, for benchmarks of what the index
// costs ingest. Every write in the process is affected, on every gateway.
func SetSearchIndex(on bool) (restore func()) {
	was := !searchIndexOff.Load()
	searchIndexOff.Store(!on)
	return func() { searchIndexOff.Store(!was) }
}

// SetAuditWorkers makes Audit check at most n versions at once instead of
// one per core, until restore is called, for benchmarks of what checking
// in parallel gains.
func SetAuditWorkers(n int) (restore func()) {
	was := auditWorkers.Swap(int32(n))
	return func() { auditWorkers.Store(was) }
}

// RESTHandler returns the REST handler, so a test can ask it before Run
// serves the listener.
func (s *Server) RESTHandler() http.Handler { return s.restRoot }

// CohortIndexResources returns how many resources the cohort index holds.
func (s *Server) CohortIndexResources() int { return s.research.IndexStats().Resources }
