package store

// Health is what a backend knows about the state of its storage: damage it
// has met, writes it refuses, and why. The zero value is a healthy store.
type Health struct {
	// Problems are one-line reasons the store is degraded, for operators;
	// empty when it is healthy. A problem stays listed until the store is
	// reopened (damage) or the condition ends (a full disk).
	Problems []string `json:"problems,omitempty"`
	// CorruptFiles is the number of distinct files found damaged since Open.
	CorruptFiles int `json:"corrupt_files,omitempty"`
	// CorruptReads counts the reads that met damage since Open (each
	// returned ErrCorrupt or skipped records).
	CorruptReads int64 `json:"corrupt_reads,omitempty"`
	// LostLogRecords is the number of records found in the write-ahead log
	// after a damaged part of it when the store was opened: writes the
	// backend acknowledged and could not replay. It is a lower bound: records
	// in damaged parts of the log cannot be counted.
	LostLogRecords int64 `json:"lost_log_records,omitempty"`
	// NoSpace is set while writes are refused with ErrNoSpace.
	NoSpace bool `json:"no_space,omitempty"`
	// Failed is set when the storage stopped taking writes for good, until
	// the store is reopened (writes return ErrUnavailable).
	Failed bool `json:"failed,omitempty"`
}

// Degraded reports whether h lists a problem.
func (h Health) Degraded() bool { return len(h.Problems) > 0 }

// HealthReporter is implemented by backends that watch their storage for
// faults (pebblestore). Health must be cheap and must not block on I/O.
type HealthReporter interface {
	Health() Health
}
