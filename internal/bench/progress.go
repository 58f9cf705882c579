package bench

// Progress receives the progress of long phases, for a progress bar. Run calls
// Start at the beginning of each phase, Add from any goroutine as work is done
// (in steps, not once per record), and Finish at its end.
type Progress interface {
	Start(phase string, total int64)
	Add(n int64)
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(string, int64) {}
func (nopProgress) Add(int64)           {}
func (nopProgress) Finish()             {}
