// Package kaddhtbench measures go-libp2p-kad-dht's provider store
// (records.ProviderManager on go-ds-pebble, with an in-memory peerstore for the
// addresses) under the workload of `kadstore bench`, so docs/BENCHMARKS.md can
// show the two side by side.
//
// It holds only tests: the comparison lives outside the kadstore binary so
// that the binary does not depend on go-libp2p-kad-dht's store. Run it with
//
//	go test ./internal/kaddhtbench -run TestProviderManagerWorkload -v -timeout 0 \
//	    -kaddht.n 1000000 [-kaddht.dir DIR] [-kaddht.json FILE]
//
// Without -kaddht.n it runs a 2000-record workload as a quick check that the
// harness still works.
package kaddhtbench
