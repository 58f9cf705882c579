package pgstore

// TestDSNEnv names the environment variable with the DSN of a database the
// tests may use (they create and drop schemas in it). Without it they skip
// with TestSkipMessage.
const TestDSNEnv = "KADSTORE_TEST_POSTGRES"

// TestSkipMessage is what the tests say when TestDSNEnv is unset: how to run
// them (docs/POSTGRES.md has the details).
const TestSkipMessage = TestDSNEnv + " is not set: the pgstore tests need PostgreSQL. " +
	`Run them with: eval "$(bash .ci/postgres.sh)" && go test -race ./store/pgstore/ (see docs/POSTGRES.md)`
