package gateway

// SetExportStageHook makes f run at the named stages of every export build
// ("selected", "files", "holds") until restore is called. Tests that use it
// must not run in parallel with other exporting tests.
func SetExportStageHook(f func(stage string)) (restore func()) {
	exportStageHook.Store(&f)
	return func() { exportStageHook.Store(nil) }
}
