package qmp

import "fmt"

// QEMU's error classes (qapi/error.json ErrorClass, QEMU 7.2). libxl maps
// GenericError, CommandNotFound, DeviceNotActive and DeviceNotFound to its
// own codes (libxl_qmp.c qmp_error_class_to_libxl_error_code); any other
// class is "unknown QMP error" to it.
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
	ClassDeviceNotActive = "DeviceNotActive"
	ClassDeviceNotFound  = "DeviceNotFound"
	ClassKVMMissingCap   = "KVMMissingCap"
)

// Error is a QMP error reply. A handler returns one to choose the class;
// any other error becomes a GenericError with the error's text.
type Error struct {
	Class string
	Desc  string
}

func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// Errorf returns a GenericError.
func Errorf(format string, a ...any) *Error {
	return &Error{Class: ClassGenericError, Desc: fmt.Sprintf(format, a...)}
}

// NewError returns an error of the given class.
func NewError(class, format string, a ...any) *Error {
	return &Error{Class: class, Desc: fmt.Sprintf(format, a...)}
}
