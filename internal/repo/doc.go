// Package repo holds tests about the repository as a whole: rules that
// every package follows, checked in one place. It has no code.
package repo
