// Package yamlerr is the error type of starflow's YAML files (the llm
// configuration, chaos profiles): one problem at a line of a file.
package yamlerr

import "fmt"

// Error is one problem in a YAML file, at a line.
type Error struct {
	File    string
	Line    int // 0 when unknown
	Message string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return e.File + ": " + e.Message
}
