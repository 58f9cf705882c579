package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
)

var getCommand = command{
	name:    "get",
	summary: "print the stored records of a key: get CID | get /ipns/NAME | get /pk/…",
	run:     runGet,
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("get", "get KEY [--api ADDR | --data DIR]", stderr)
	var t target
	t.register(fs)
	pos, err := parseWithArgs(fs, args, 1)
	if err != nil {
		return err
	}
	keyText := pos[0]
	key, isValue, err := api.ParseKey(keyText)
	if err != nil {
		return err
	}
	if err := t.resolve(); err != nil {
		return err
	}
	defer t.close()
	var resp api.RecordsResponse
	if t.useAPI() {
		if err := t.getJSON(ctx, "/v1/records", url.Values{"key": {keyText}}, &resp); err != nil {
			return err
		}
		return printJSON(stdout, resp)
	}
	s, err := t.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	if isValue {
		v, err := s.GetValue(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no value record for %s", keyText)
		}
		if err != nil {
			return err
		}
		l := ndjson.FromValue(v)
		resp.Value = &l
	} else {
		provs, err := s.Providers(ctx, key, 0)
		if err != nil {
			return err
		}
		if len(provs) == 0 {
			return fmt.Errorf("no provider records for %s", keyText)
		}
		for _, p := range provs {
			resp.Providers = append(resp.Providers, ndjson.FromProvider(p))
		}
	}
	return printJSON(stdout, resp)
}
