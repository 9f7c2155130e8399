package fleet

import (
	"testing"

	"github.com/spillway-dev/spillway/internal/testbin"
)

// testChildMain, when set, replaces the tests: the binary was re-executed
// to play a part in one (see orphan_linux_test.go).
var testChildMain func()

func TestMain(m *testing.M) {
	if testChildMain != nil {
		testChildMain()
		return
	}
	testbin.Main(m)
}

// spillwayBinary is the spillway binary the integration tests run.
var spillwayBinary = testbin.Spillway
