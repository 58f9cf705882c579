// Package workers runs a function over many indexes with bounded
// concurrency, for the test network and the simulator, which start, stop and
// query hundreds of nodes at once.
package workers

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Run runs f(ctx, 0..n-1), conc at a time (errgroup's limit), and returns
// the first error, or ctx's once it is done; it starts no more calls after
// ctx is done.
func Run(ctx context.Context, n, conc int, f func(context.Context, int) error) error {
	var g errgroup.Group
	g.SetLimit(conc)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { return f(ctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
