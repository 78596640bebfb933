package runner

import (
	"context"
	"fmt"
	"time"

	"cacheclip/jobs"
	"cacheclip/prefill"
)

// labelState is a label job's per-question state: the row's labels and their
// token ids as the model would write them after the question.
type labelState struct {
	labels []string
	ids    [][]int32
}

// planLabels lays out a label job's question (its choices shown through the
// job's label prompt) and tokenises every label after it.
func (e *Engine) planLabels(w *Work) error {
	labels := w.Q.Choices
	if len(labels) == 0 {
		labels = e.spec.Labels
	}
	if len(labels) == 0 {
		return &jobs.RowError{File: e.spec.Questions, Row: w.Q.Row, Column: jobs.ColChoices,
			Msg: "a label job needs labels, and this row has no choices and the job no labels"}
	}
	question := jobs.LabelQuestion(e.spec.LabelPrompt, w.Q.Question, labels)
	lay, err := e.primary.Layout(w.Texts, question)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	ls := &labelState{labels: labels}
	if ls.ids, err = e.primary.LabelIDs(question, labels); err != nil {
		return fmt.Errorf("row %d, column %s: %w", w.Q.Row, jobs.ColChoices, err)
	}
	reserve := prefill.LabelReserve(ls.ids)
	if lim := e.primary.Model.Config.MaxPos; lay.Len()+reserve > lim {
		return fmt.Errorf("context too long: prompt of %d tokens (%d in %d chunks) plus %d label tokens exceeds the model's limit of %d",
			lay.Len(), lay.ContextTokens(), len(lay.Chunks), reserve, lim)
	}
	w.State = &workState{lay: lay, q: prefill.Query{Chunks: w.Texts, Question: question}, maxNew: reserve, labels: ls}
	return nil
}

// answerLabels prefills each question with the method, then scores every
// label of the whole batch in one forward call branching from the prompts.
func (e *Engine) answerLabels(ctx context.Context, batch []*Work) error {
	results, err := e.prefillBatch(ctx, batch)
	if err != nil {
		return err
	}
	var items []*prefill.LabelItem
	var owners []*Work
	for i, w := range batch {
		st := w.State.(*workState)
		res := results[i]
		if res == nil {
			continue
		}
		items = append(items, &prefill.LabelItem{Res: res, Labels: st.labels.ids})
		owners = append(owners, w)
	}
	if len(items) == 0 {
		return nil
	}
	t0 := time.Now()
	if err := prefill.ScoreLabels(ctx, e.prefiller.Model, items); err != nil {
		return err
	}
	// The batch is scored together: each question is charged the batch's time.
	dec := ms(time.Since(t0))
	for i, it := range items {
		w := owners[i]
		ls := w.State.(*workState).labels
		d := prefill.DecideLabels(it.LogProbs, e.spec.LabelScore)
		r := &w.Result
		r.Label = ls.labels[d.Best]
		r.Answer = r.Label
		r.LabelLogProbs = d.LogLik
		r.LabelProbs = d.Probs
		r.LabelMargin = d.Margin
		if e.spec.Diagnostics {
			r.AnswerIDs = ls.ids[d.Best]
		}
		r.DecodeMS = dec
	}
	return nil
}
