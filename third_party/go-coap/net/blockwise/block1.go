package blockwise

// wanwu patch: this file is new (see PATCHES.md).
//
// A request body sent block-wise (Block1, RFC 7959 §2.5) is reassembled by
// the identity of the request, not by its token. RFC 7959 §2.3 says that a
// client may use the same token for every block of a transfer or a new token
// for each (libcoap 4.3 does the latter), and §2.4 and §2.5 identify the
// transfer by the endpoint (a BlockWise belongs to one connection, so one
// endpoint) and the request: its method and its options other than the block
// options and Size1. go-coap v3.5.5 keyed the body on the token, so a
// client that changed tokens had each block taken for a whole body: the last
// block alone was handed to the handler, and stored when it happened to be
// valid on its own.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dsnet/golib/memfile"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
)

// ErrRequestEntityIncomplete is reported (through the BlockWise's errors
// function) for a block that was answered 4.08 Request Entity Incomplete
// (RFC 7959 §2.9.2): a transfer that does not start at block 0, a missing
// block, or a block of a transfer that expired.
var ErrRequestEntityIncomplete = errors.New("request entity incomplete")

// maxBlock1Transfers bounds the request bodies one connection may be
// sending at once; a new one beyond it replaces the least recently used.
const maxBlock1Transfers = 8

// block1Transfers are the request bodies a connection is receiving, by
// request identity (requestKey).
type block1Transfers struct {
	mu sync.Mutex
	m  map[string]*block1Transfer
}

type block1Transfer struct {
	msg        *pool.Message // the first block's request, its body the bytes so far
	body       *memfile.File
	size       int64
	validUntil time.Time
}

func (t *block1Transfers) checkExpirations(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.m {
		if now.After(v.validUntil) {
			delete(t.m, k)
		}
	}
}

// store adds a transfer, replacing the least recently used one when the
// connection has maxBlock1Transfers already.
func (t *block1Transfers) store(key string, v *block1Transfer) {
	if t.m == nil {
		t.m = map[string]*block1Transfer{}
	}
	if len(t.m) >= maxBlock1Transfers {
		var oldest string
		var at time.Time
		for k, o := range t.m {
			if oldest == "" || o.validUntil.Before(at) {
				oldest, at = k, o.validUntil
			}
		}
		delete(t.m, oldest)
	}
	t.m[key] = v
}

// requestKey is the identity of a block-wise request (RFC 7959 §2.4): its
// method and every option but Block1, Block2, Size1 and Size2, in order.
// Uri-Path and Uri-Query are among them, so on wanwu's plain UDP listener
// the device token in the query is too.
func requestKey(r *pool.Message) string {
	k := make([]byte, 0, 128)
	k = append(k, byte(r.Code()))
	for _, o := range r.Options() {
		switch o.ID {
		case message.Block1, message.Block2, message.Size1, message.Size2:
			continue
		}
		k = binary.AppendUvarint(k, uint64(o.ID))
		k = binary.AppendUvarint(k, uint64(len(o.Value)))
		k = append(k, o.Value...)
	}
	return string(k)
}

// processReceivedBlock1 handles a POST or PUT: a request without Block1, or
// a single block with M=0 at block 0, goes to next as it is; block 0 with
// M=1 starts (or restarts) a transfer; the following blocks must come in
// order and are answered 2.31 Continue until the last (M=0), when next gets
// the whole body and its response echoes the last Block1 (RFC 7959 §2.3).
// Anything else is answered 4.08 Request Entity Incomplete (§2.9.2) and
// ends the transfer.
func (b *BlockWise[C]) processReceivedBlock1(w *responsewriter.ResponseWriter[C], r *pool.Message, maxSzx SZX, next func(w *responsewriter.ResponseWriter[C], r *pool.Message)) error {
	block, err := r.GetOptionUint32(message.Block1)
	if err != nil {
		if errors.Is(err, message.ErrOptionNotFound) {
			next(w, r)
			return nil
		}
		return fmt.Errorf("cannot get Block1 option: %w", err)
	}
	szx, num, more, err := DecodeBlockOption(block)
	if err != nil {
		return fmt.Errorf("cannot decode block option: %w", err)
	}
	n, err := r.BodySize()
	if err != nil {
		return payloadSizeError(err)
	}
	if more && szx < SZXBERT && n != szx.Size() {
		// §2.2: a block with M=1 carries exactly its size.
		b.answerBlock1(w, r, codes.BadRequest, nil)
		return nil
	}
	key := requestKey(r)
	now := time.Now()
	b.block1.mu.Lock()
	t := b.block1.m[key]
	if t != nil && now.After(t.validUntil) {
		delete(b.block1.m, key)
		t = nil
	}
	if num == 0 {
		if t != nil {
			delete(b.block1.m, key) // a new transfer of the same request: start over
			t = nil
		}
		if !more {
			b.block1.mu.Unlock()
			next(w, r)
			return nil
		}
		msg := b.cc.AcquireMessage(r.Context())
		msg.SetCode(r.Code())
		msg.ResetOptionsTo(r.Options())
		msg.SetSequence(r.Sequence())
		body := memfile.New(make([]byte, 0, 1024))
		msg.SetBody(body)
		t = &block1Transfer{msg: msg, body: body}
		b.block1.store(key, t)
	}
	if t == nil {
		b.block1.mu.Unlock()
		b.incomplete(w, r, fmt.Sprintf("block %d of a transfer that did not start at block 0, or expired", num))
		return nil
	}
	off := num * szx.Size()
	switch {
	case off < t.size && more && off+n <= t.size:
		// A block received before, sent again with a new message id (its
		// 2.31 was lost): acknowledged again, not stored twice.
		t.validUntil = now.Add(b.expiration)
		b.block1.mu.Unlock()
		b.continueBlock1(w, r, szx, maxSzx, num)
		return nil
	case off != t.size:
		delete(b.block1.m, key)
		b.block1.mu.Unlock()
		b.incomplete(w, r, fmt.Sprintf("block %d at byte %d, but %d bytes received", num, off, t.size))
		return nil
	}
	if err := appendBody(t.body, r); err != nil {
		delete(b.block1.m, key)
		b.block1.mu.Unlock()
		return err
	}
	t.size += n
	t.validUntil = now.Add(b.expiration)
	if more {
		b.block1.mu.Unlock()
		b.continueBlock1(w, r, szx, maxSzx, num)
		return nil
	}
	delete(b.block1.m, key)
	b.block1.mu.Unlock()

	req := t.msg
	req.Remove(message.Block1)
	req.Remove(message.Size1)
	req.SetType(r.Type())
	req.SetToken(r.Token())
	req.SetMessageID(r.MessageID())
	req.SetContext(r.Context())
	if _, err := t.body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("cannot seek to start of reassembled request: %w", err)
	}
	next(w, req)
	if resp := w.Message(); resp.Code() >= codes.Created && resp.Code() < codes.BadRequest {
		// §2.3: the final response acknowledges the last block.
		if v, err := EncodeBlockOption(getSzx(szx, maxSzx), num, false); err == nil {
			resp.SetOptionUint32(message.Block1, v)
		}
	}
	return nil
}

func appendBody(body *memfile.File, r *pool.Message) error {
	if r.Body() == nil {
		return nil
	}
	if _, err := r.Body().Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("cannot seek to start of request: %w", err)
	}
	if _, err := body.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("cannot seek to end of reassembled request: %w", err)
	}
	if _, err := io.Copy(body, r.Body()); err != nil {
		return fmt.Errorf("cannot copy block to reassembled request: %w", err)
	}
	return nil
}

// continueBlock1 answers 2.31 Continue for block num (§2.3). When the
// client's blocks are larger than the server takes, the answer names the
// smaller size and the client numbers its next block by the bytes it sent
// (§2.5, Figure 6).
func (b *BlockWise[C]) continueBlock1(w *responsewriter.ResponseWriter[C], r *pool.Message, szx, maxSzx SZX, num int64) {
	v, err := EncodeBlockOption(getSzx(szx, maxSzx), num, true)
	if err != nil {
		b.answerBlock1(w, r, codes.BadRequest, nil)
		return
	}
	b.answerBlock1(w, r, codes.Continue, &v)
}

// incomplete answers 4.08 (§2.9.2) and reports ErrRequestEntityIncomplete.
func (b *BlockWise[C]) incomplete(w *responsewriter.ResponseWriter[C], r *pool.Message, why string) {
	b.answerBlock1(w, r, codes.RequestEntityIncomplete, nil)
	b.errors(fmt.Errorf("%w: %s", ErrRequestEntityIncomplete, why))
}

func (b *BlockWise[C]) answerBlock1(w *responsewriter.ResponseWriter[C], r *pool.Message, c codes.Code, block *uint32) {
	m := b.cc.AcquireMessage(r.Context())
	m.SetCode(c)
	m.SetToken(bytes.Clone(r.Token()))
	if block != nil {
		m.SetOptionUint32(message.Block1, *block)
	}
	w.SetMessage(m)
}
