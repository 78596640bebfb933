package prefill

import (
	"fmt"

	"cacheclip/methods"
)

// Method is a method resolved from the registry (package methods) for one
// job, plus the run-time pieces the registry cannot hold. Build it with
// NewMethod or from a methods.Config.
type Method struct {
	methods.Config
	// Selector is CacheClip's auxiliary scorer (auxscore.Scorer); it may be nil
	// when every Query carries its Selection.
	Selector Selector
}

// NewMethod returns the named built-in method with its defaults and ratio 0.2.
func NewMethod(name string) (Method, error) {
	c, err := methods.Default().Resolve(name, 0.2, nil)
	if err != nil {
		return Method{}, fmt.Errorf("method %q: %w", name, err)
	}
	return Method{Config: c}, nil
}

// Validate checks the method against a model of the given depth: the
// registry's checks of ratio and parameters (values may have been changed
// after Resolve), then what only the model knows.
func (m *Method) Validate(layers int) error {
	if err := m.Check(); err != nil {
		return fmt.Errorf("method %s: %w", m.Name(), err)
	}
	if m.Entry.Kind == methods.Prune {
		if cl := m.Values.Int("check_layer"); cl >= layers {
			return fmt.Errorf("method %s: method_params.check_layer: %d is not below the model's %d layers", m.Name(), cl, layers)
		}
	}
	if m.Entry.Kind == methods.Selected && !m.Entry.NeedsAux && m.Entry.Select == nil {
		return fmt.Errorf("method %s: selects tokens but has neither an auxiliary model nor a Select function", m.Name())
	}
	return nil
}
