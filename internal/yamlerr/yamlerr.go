// Package yamlerr is the error type of starflow's YAML files (the llm
// configuration, chaos profiles): one problem at a line of a file.
package yamlerr

import (
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
)

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

// From turns an error from the YAML decoder into an *Error at the line the
// decoder names, if it names one.
func From(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		return &Error{File: file, Line: ye.GetToken().Position.Line, Message: ye.GetMessage()}
	}
	return &Error{File: file, Message: err.Error()}
}
