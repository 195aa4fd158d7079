package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/policy"
)

const tokenUsage = `usage: fhiranchor token [flags]

Prints a bearer token signed by the data directory's development key
(<data>/dev-signing-key.pem, created if missing, as 'fhiranchor serve' does),
for curl and other clients of a local gateway. The data directory must
exist: a token signed by a key no gateway trusts would only fail later.

example:
  export FHIRANCHOR_TOKEN=$(fhiranchor token --data ./data)
  curl -H "Authorization: Bearer $FHIRANCHOR_TOKEN" http://127.0.0.1:8080/fhir/r4/metadata

With --console, it prints a sign-in link of the web console instead: the
token rides in the URL's fragment, which the browser never sends to the
server; the console takes it and wipes it from the address bar and history.
  fhiranchor token --scope fhiranchor/policy.admin --console http://127.0.0.1:8080

flags:
`

// runToken implements 'fhiranchor token'. It creates the dev key when the
// data directory has none, as 'serve' would; a data directory that does not
// exist is an error (a mistyped --data, or the wrong working directory),
// not a fresh key no gateway trusts.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fset := flag.NewFlagSet("token", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(stderr, tokenUsage)
		fset.PrintDefaults()
	}
	dataDir := fset.String("data", "./data", "data `dir`ectory holding the dev signing key")
	scope := fset.String("scope", "system/*.read system/*.write", "space-separated SMART `scopes` to grant")
	client := fset.String("client", "dev-client", "client `id` (the client_id claim; sub defaults to it)")
	ttl := fset.Duration("ttl", time.Hour, "lifetime of the token")
	aud := fset.String("aud", "", "aud claim; set it when the server requires an audience")
	iss := fset.String("iss", "", "iss claim; set it when the server requires an issuer")
	purpose := fset.String("purpose", "TREAT", "purpose_of_use claim: the v3-ActReason `code` consent decisions are made for (TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT...)")
	fhirUser := fset.String("fhir-user", "", "fhirUser claim: the FHIR `reference` the client acts as, e.g. Practitioner/p1 or Patient/123")
	org := fset.String("organization", "", "organization claim: the Organization `reference` the client acts for")
	roles := fset.String("roles", "", "subject_role claim: space-separated role `codes`, e.g. physician")
	consoleURL := fset.String("console", "", "print a sign-in link of the web console of the gateway at this `URL` (e.g. http://127.0.0.1:8080) instead of the bare token")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		fset.Usage()
		return fmt.Errorf("token: unexpected argument %q", fset.Arg(0))
	}
	scopes := strings.Fields(*scope)
	switch {
	case len(scopes) == 0:
		return errors.New("token: --scope is empty")
	case strings.TrimSpace(*client) == "":
		return errors.New("token: --client is empty")
	case *ttl <= 0:
		return fmt.Errorf("token: --ttl must be positive, got %v", *ttl)
	case *purpose != "" && !policy.ValidPurpose(*purpose):
		// The gateway refuses such a token: the purpose goes into anchored records.
		return errors.New("token: --purpose is not a code of the v3 PurposeOfUse value set")
	case *fhirUser != "" && !fhir.ValidLiteralReference(*fhirUser):
		return errors.New("token: --fhir-user is not a FHIR reference such as Practitioner/p1")
	case *org != "" && !fhir.ValidLiteralReference(*org):
		return errors.New("token: --organization is not a FHIR reference such as Organization/o1")
	}
	var link *url.URL
	if *consoleURL != "" {
		u, err := url.Parse(*consoleURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return errors.New("token: --console is not a gateway URL such as http://127.0.0.1:8080")
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/console/"
		link = u
	}
	if fi, err := os.Stat(*dataDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("token: no data directory %s: run 'fhiranchor serve --data %s' first, or pass the gateway's --data", *dataDir, *dataDir)
	}
	key, err := auth.LoadOrCreateDevKey(*dataDir)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.MintToken(key, auth.Claims{
		ClientID: *client,
		Issuer:   *iss,
		Audience: *aud,
		Scopes:   scopes,
		TTL:      *ttl,
		Now:      time.Now(),

		PurposeOfUse: *purpose,
		FHIRUser:     *fhirUser,
		Organization: *org,
		Roles:        strings.Fields(*roles),
	})
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if link != nil {
		// JWTs are base64url and dots: nothing in the fragment needs escaping.
		_, err = fmt.Fprintln(stdout, link.String()+"#token="+tok)
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
