package guard_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/spillway-dev/spillway/guard"
)

// A health server learns of each change of the dependency's state the
// moment it happens, through OnChange, and reads it with Status: here the
// call that trips the breaker.
func ExampleOptions_onChange() {
	changed := make(chan struct{}, 1)
	g, err := guard.New(guard.Config{ConsecutiveFailures: 1}, guard.Options{
		Name: "backend",
		OnChange: func() {
			select { // never block: a pending wake-up already covers this change
			case changed <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = g.Do(context.Background(), func(context.Context) error { return errors.New("503 Service Unavailable") })

	<-changed // a long-poll handler waits here, then answers
	st := g.Status()
	fmt.Println(st.State, st.Breaker)
	// Output: down open
}
