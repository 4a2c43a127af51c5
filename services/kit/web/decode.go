package web

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

// DefaultMaxBody bounds request bodies. The services' requests are a few
// hundred bytes; 64 KiB leaves room without letting a client make the
// server buffer megabytes.
const DefaultMaxBody = 64 << 10

// DecodeJSON strictly decodes the request body into dst: at most maxBytes
// bytes, a JSON content type when one is given, no unknown fields and
// exactly one JSON value. Every failure is a *Problem that says what to fix.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, maxBytes int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return NewProblem(http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err, maxBytes)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return decodeProblem(err, maxBytes)
		}
		return NewProblem(http.StatusBadRequest, "the body must hold a single JSON object and nothing after it")
	}
	return nil
}

func decodeProblem(err error, maxBytes int64) *Problem {
	var (
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		tooLarge  *http.MaxBytesError
		unmarshal *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &tooLarge):
		return NewProblem(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", maxBytes)
	case errors.Is(err, io.EOF):
		return NewProblem(http.StatusBadRequest, "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return NewProblem(http.StatusBadRequest, "the body is truncated JSON")
	case errors.As(err, &syntax):
		return NewProblem(http.StatusBadRequest, "the body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return NewProblem(http.StatusBadRequest, "the body must be a JSON object")
		}
		p := NewProblem(http.StatusBadRequest, "%s must be a JSON %s, got %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
		p.Errors = []FieldError{{Field: field, Detail: p.Detail}}
		return p
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for unknown fields.
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := NewProblem(http.StatusBadRequest, "unknown field %q", field)
		p.Errors = []FieldError{{Field: field, Detail: "this field is not part of the request"}}
		return p
	case errors.As(err, &unmarshal):
		return NewProblem(http.StatusInternalServerError, "the request could not be decoded")
	default:
		return NewProblem(http.StatusBadRequest, "the body could not be read")
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	default:
		return "object"
	}
}
