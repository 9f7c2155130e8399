package stack

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testbin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { testbin.Cleanup() }))
}

// spillwayBinary is the spillway binary the integration tests run.
var spillwayBinary = testbin.Spillway
