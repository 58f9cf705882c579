package pb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxMessageSize is the largest message accepted or sent: 4 MiB, as
// go-libp2p's network.MessageSizeMax and rust-libp2p's default.
const MaxMessageSize = 4 << 20

// ErrTooLarge is returned (wrapped) for a length prefix above the limit, or a
// message too large to send.
var ErrTooLarge = errors.New("kad/pb: message too large")

// ReadFrame reads one length-prefixed message from r and returns its bytes.
// A prefix larger than max gives ErrTooLarge before anything is allocated; the
// buffer grows with the bytes actually received, so a peer that announces a
// large message and sends little costs little memory. io.EOF is returned only
// when r ends cleanly before a new prefix.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	var buf bytes.Buffer
	buf.Grow(int(min(n, 64<<10)))
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// readUvarint reads an unsigned varint of at most binary.MaxVarintLen64 bytes.
// It returns io.EOF only when r ends before the first byte, and ErrMalformed
// for a varint that overflows 64 bits.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := range binary.MaxVarintLen64 {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("%w: length prefix overflows 64 bits", ErrMalformed)
}

// AppendFrame appends m with its unsigned-varint length prefix to b.
func AppendFrame(b []byte, m *Message) []byte {
	size := m.Size()
	b = binary.AppendUvarint(b, uint64(size))
	return m.Append(b)
}

// WriteFrame writes m, length-prefixed, to w in a single Write.
func WriteFrame(w io.Writer, m *Message) error {
	size := m.Size()
	if size > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	buf := make([]byte, 0, size+binary.MaxVarintLen64)
	_, err := w.Write(AppendFrame(buf, m))
	return err
}
