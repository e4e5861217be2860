package main

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redistest"
)

// readDoc reads a file of the repository (relative to its root).
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAPIDocumented: every route registered on the Fiber app, as serve
// wires it with both platforms in their callback modes, is in docs/API.md
// as "`METHOD /path/{param}`". A route added without its row fails here,
// naming the row to add.
func TestAPIDocumented(t *testing.T) {
	r := redistest.New(t)
	file := writeFile(t, fmt.Sprintf(`
redis_url: %q
redis_prefix: %q
admin_token: docs-test-token
properties: [{id: acme, slack_channel: C1}]
agents: [{id: alice, properties: [acme], telegram_user_id: 1, slack_user_id: U1}]
telegram: {token: "1:docs", mode: webhook, webhook_url: "https://chat.example/telegram/webhook", webhook_secret: s3cret}
slack: {bot_token: xoxb-docs, signing_secret: docs, mode: events}
`, r.URL, r.Prefix))
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := build(context.Background(), c, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	doc := readDoc(t, "docs/API.md")
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	seen := map[string]bool{}
	for _, rt := range svc.server.App().GetRoutes(true) {
		if rt.Method == "HEAD" || rt.Method == "USE" {
			continue
		}
		row := "`" + rt.Method + " " + param.ReplaceAllString(rt.Path, "{$1}") + "`"
		if seen[row] {
			continue
		}
		seen[row] = true
		if !strings.Contains(doc, row) {
			t.Errorf("docs/API.md does not document the route %s: add it (auth, request, response, errors)", row)
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d routes found: the wiring changed, fix the test", len(seen))
	}
}

// TestRepositoryStandsAlone: README.md and docs/ point to nothing outside
// the repository and name no issue numbers; the README links the reference
// documents; no text the product prints (Go string literals, the widget's
// and board's assets) names an issue number; git and docker leave the
// files holding secrets (onduty.yaml, .env) out.
func TestRepositoryStandsAlone(t *testing.T) {
	outside := regexp.MustCompile(`\.\./shared|SPEC\.md|SPEC §|(?i)\bissues? #?\d+`)
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, p := range append(docs, "../../README.md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := outside.FindString(line); m != "" {
				t.Errorf("%s:%d: %q points outside the repository: %s", strings.TrimPrefix(p, "../../"), i+1, m, line)
			}
		}
	}
	readme := readDoc(t, "README.md")
	for _, link := range []string{"(docs/API.md)", "(docs/CONFIG.md)", "(docs/COMMANDS.md)"} {
		if !strings.Contains(readme, link) {
			t.Errorf("README.md does not link %s", link)
		}
	}

	issue := regexp.MustCompile(`(?i)\bissues? #?\d+`)
	fset := token.NewFileSet()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		switch {
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && issue.MatchString(lit.Value) {
					t.Errorf("%s: the product prints an issue number: %s", fset.Position(lit.Pos()), lit.Value)
				}
				return true
			})
		case strings.Contains(path, "/assets/"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if m := issue.FindString(string(b)); m != "" {
				t.Errorf("%s: names %q", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, f := range []string{".gitignore", ".dockerignore"} {
		patterns := strings.Split(readDoc(t, f), "\n")
		ignored := func(name string) bool {
			for _, p := range patterns {
				p = strings.TrimPrefix(strings.TrimSpace(p), "/")
				if ok, _ := filepath.Match(p, name); ok && p != "" && !strings.HasPrefix(p, "#") {
					return true
				}
			}
			return false
		}
		for _, secret := range []string{"onduty.yaml", ".env", ".env.production"} {
			if !ignored(secret) {
				t.Errorf("%s does not leave out %s", f, secret)
			}
		}
		if ignored("onduty.example.yaml") {
			t.Errorf("%s leaves out onduty.example.yaml", f)
		}
	}
}
