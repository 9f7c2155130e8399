package main

import (
	"testing"

	"github.com/spillway-dev/spillway/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }
