package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testbin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { testbin.Cleanup() }))
}
