package plinth

// Meter shows the progress of long work (a bar on a terminal, log lines
// otherwise; the CLI provides it) for the packages that do such work
// (bundle, legacy).
type Meter interface {
	Add(n int)
	// Finish reports the work done; Stop ends it after a failure.
	Finish()
	Stop()
}

// MeterFunc starts a Meter for work on about total records.
type MeterFunc func(what string, total int64) Meter

// Start starts a Meter; a nil MeterFunc gives one that shows nothing.
func (f MeterFunc) Start(what string, total int64) Meter {
	if f == nil {
		return noMeter{}
	}
	return f(what, total)
}

type noMeter struct{}

func (noMeter) Add(int) {}
func (noMeter) Finish() {}
func (noMeter) Stop()   {}
