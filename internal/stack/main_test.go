package stack

import (
	"testing"

	"github.com/spillway-dev/spillway/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// spillwayBinary is the spillway binary the integration tests run.
var spillwayBinary = testbin.Spillway
