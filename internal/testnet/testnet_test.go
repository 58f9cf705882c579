package testnet_test

import (
	"context"
	"testing"

	"github.com/kadstore/kadstore/internal/testnet"
)

func TestSmallNetworkFindsEveryKeyAndSurvivesRestart(t *testing.T) {
	sum, err := testnet.Run(context.Background(), testnet.Options{Nodes: 8, Keys: 40, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Provided != 40 || sum.Found != 40 || sum.FoundWithAddrs != 40 {
		t.Fatalf("provided %d, found %d (%d with addresses) of 40", sum.Provided, sum.Found, sum.FoundWithAddrs)
	}
	if sum.RecordsBefore <= 0 || sum.RecordsAfter != sum.RecordsBefore {
		t.Fatalf("restarted node held %d records before, %d after", sum.RecordsBefore, sum.RecordsAfter)
	}
	if sum.FoundAfterRestart != sum.RestartKeys {
		t.Fatalf("after restart %d of %d keys found", sum.FoundAfterRestart, sum.RestartKeys)
	}
}
