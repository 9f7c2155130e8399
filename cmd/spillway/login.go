package main

import (
	"context"
	"errors"
	"io"
)

func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented")
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented")
}
