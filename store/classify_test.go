package store

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// notRejections are the sentinels that report a failure or a lookup result,
// never a refused record.
var notRejections = []error{ErrNotFound, ErrClosed, ErrCorrupt, ErrNoSpace, ErrUnavailable}

// TestEverySentinelClassified parses the package's sources: every exported
// Err… variable must be in rejections or notRejections, so that adding a
// sentinel without deciding what it is fails here.
func TestEverySentinelClassified(t *testing.T) {
	known := map[error]bool{}
	for _, e := range rejections {
		known[e] = true
	}
	for _, e := range notRejections {
		if known[e] {
			t.Errorf("%v is in both lists", e)
		}
		known[e] = true
	}
	byText := map[string]bool{}
	for e := range known {
		byText[e.Error()] = true
	}
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ent := range entries {
		n := ent.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, id := range s.(*ast.ValueSpec).Names {
					if id.IsExported() && strings.HasPrefix(id.Name, "Err") {
						names = append(names, id.Name)
					}
				}
			}
		}
	}
	if len(names) != len(known) {
		t.Errorf("the package declares %d sentinels %v, the lists classify %d: add the new one to rejections (classify.go) or notRejections (this file)", len(names), names, len(known))
	}
}

func TestIsRejection(t *testing.T) {
	for _, e := range rejections {
		if !IsRejection(e) || !IsRejection(fmt.Errorf("pebblestore: put: %w", e)) {
			t.Errorf("IsRejection(%v) = false", e)
		}
	}
	for _, e := range append(notRejections, nil, errors.New("disk on fire")) {
		if IsRejection(e) || (e != nil && IsRejection(fmt.Errorf("x: %w", e))) {
			t.Errorf("IsRejection(%v) = true", e)
		}
	}
}
