package kad

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
)

// HandleMessageForTest runs the message handler on raw message bytes, as the
// stream handler does for each frame, and returns the encoded response (nil
// if none), the message type label and the outcome.
func (n *Node) HandleMessageForTest(ctx context.Context, from peer.ID, raw []byte) ([]byte, string, string) {
	resp, typ, outcome := n.handleMessage(ctx, from, raw)
	if resp == nil {
		return nil, typ, outcome
	}
	return resp.Marshal(), typ, outcome
}
