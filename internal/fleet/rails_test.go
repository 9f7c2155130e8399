package fleet

import "testing"

// TestOptionsGuardrails: the fleet decides through the guardrails it is
// given, and reports their budget when they can tell it.
func TestOptionsGuardrails(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Size = 8
	cfg.Command = []string{"/bin/true"}

	f, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := f.BudgetRemaining(); !ok || n != 2 {
		t.Errorf("default guardrails: BudgetRemaining() = %d, %v; want 25%% of 8 = 2, true", n, ok)
	}

	own := NewGuardrails(&cfg)
	own.Budget = NewBudget(5, cfg.Budget.Window)
	if f, err = New(cfg, Options{Guardrails: own}); err != nil {
		t.Fatal(err)
	}
	if n, ok := f.BudgetRemaining(); !ok || n != 5 {
		t.Errorf("given guardrails: BudgetRemaining() = %d, %v; want 5, true", n, ok)
	}

	// Guardrails without a Remaining method do not tell.
	if f, err = New(cfg, Options{Guardrails: struct{ Guardrails }{own}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.BudgetRemaining(); ok {
		t.Error("guardrails without Remaining: BudgetRemaining() ok")
	}
}
