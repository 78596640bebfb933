package prefill

import (
	"context"
	"fmt"
	"time"

	"cacheclip/model"
)

// Answer is a generated answer with its accounting.
type Answer struct {
	Text     string
	IDs      []int32
	Reason   string // eos, stop, length
	Stats    Stats
	Decode   time.Duration
	Selected []int
}

// Answer prefills the query with the method and decodes the answer.
func (e *Prefiller) Answer(ctx context.Context, q Query, m Method, opts model.GenOptions, tok model.Detokenizer) (*Answer, error) {
	res, err := e.Prefill(ctx, q, m, max(opts.MaxNewTokens, 0))
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	defer res.Cache.Free()
	st := &model.GenState{Cache: res.Cache, NextPos: res.NextPos, Logits: res.Logits, Opts: opts, Tok: tok, Groups: res.Groups}
	if err := e.Model.Generate(ctx, []*model.GenState{st}); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	return &Answer{Text: st.Text, IDs: st.IDs, Reason: st.Reason, Stats: res.Stats, Decode: time.Since(t0), Selected: res.Selected}, nil
}
