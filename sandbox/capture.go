package sandbox

import "strconv"

// capture is a bounded io.Writer for a guest's stdout or stderr. It keeps the
// first half of its cap and the last half (in a ring), because the start of
// a log says what the guest was doing and the end says how it died; what
// falls between is replaced by a marker naming how many bytes were dropped.
//
// WASI fd_write runs on the guest's goroutine and the result is read after
// the guest has stopped, so no lock is needed.
type capture struct {
	headCap int
	head    []byte
	ring    []byte // allocated at the first byte beyond the head, len == tailCap
	tailCap int
	ringPos int   // next write position in ring
	ringLen int   // bytes in ring
	total   int64 // bytes written in all
}

func newCapture(limit int) *capture {
	return &capture{headCap: limit / 2, tailCap: limit - limit/2}
}

// Write never fails, so a chatty guest is never made to handle EIO.
func (c *capture) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	if room := c.headCap - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 || c.tailCap == 0 {
		return n, nil
	}
	if c.ring == nil {
		c.ring = make([]byte, c.tailCap)
	}
	if len(p) >= c.tailCap { // only the last tailCap bytes can survive
		copy(c.ring, p[len(p)-c.tailCap:])
		c.ringPos, c.ringLen = 0, c.tailCap
		return n, nil
	}
	k := copy(c.ring[c.ringPos:], p)
	copy(c.ring, p[k:])
	c.ringPos = (c.ringPos + len(p)) % c.tailCap
	c.ringLen = min(c.ringLen+len(p), c.tailCap)
	return n, nil
}

// Bytes returns what was kept: everything if it fit, else head, a marker
// "\n[... N bytes truncated ...]\n" and tail.
func (c *capture) Bytes() []byte {
	kept := int64(len(c.head) + c.ringLen)
	dropped := c.total - kept
	out := make([]byte, 0, kept+40)
	out = append(out, c.head...)
	if dropped > 0 {
		out = append(out, "\n[... "...)
		out = strconv.AppendInt(out, dropped, 10)
		out = append(out, " bytes truncated ...]\n"...)
	}
	if c.ringLen < c.tailCap { // ring not yet wrapped: it starts at 0
		return append(out, c.ring[:c.ringLen]...)
	}
	out = append(out, c.ring[c.ringPos:]...)
	return append(out, c.ring[:c.ringPos]...)
}
