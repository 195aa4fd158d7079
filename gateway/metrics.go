package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Metrics are the gateway's Prometheus metrics, in a registry of their own
// (not the global one: two gateways in one process, as in tests, must not
// share counters). It implements access.Metrics, research.Metrics and
// anchor.Metrics, so each package reports through an interface it owns.
//
// No label carries an id, a client-chosen string or PHI: methods are the
// registered gRPC methods, codes gRPC codes, resource types R4 type names
// (else "other"), outcomes fixed words.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	ingested   *prometheus.CounterVec
	decisions  *prometheus.CounterVec
	anchors    prometheus.Counter
	gas        prometheus.Counter
	queries    *prometheus.CounterVec
	suppressed prometheus.Counter
	methods    map[string]bool // the registered gRPC methods; others count as "other"
}

// NewMetrics returns the gateway's metrics, registered in a new registry.
// Pass them to anchor.Config.Metrics and Deps.Metrics; the gateway adds
// the vault's and the log's sizes, read when scraped.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhiranchor_requests_total",
			Help: "Calls by gRPC method (REST routes map to theirs) and gRPC status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fhiranchor_request_duration_seconds",
			Help:    "Time to answer a call, by gRPC method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method"}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhiranchor_resources_ingested_total",
			Help: "Resource versions stored (created or updated), by resource type.",
		}, []string{"type"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhiranchor_access_decisions_total",
			Help: "Access decisions recorded, by outcome (allow, deny).",
		}, []string{"outcome"}),
		anchors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fhiranchor_anchors_mined_total",
			Help: "Anchor transactions this process saw mined.",
		}),
		gas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fhiranchor_anchor_gas_used_total",
			Help: "Gas used by the anchor transactions this process saw mined.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhiranchor_research_queries_total",
			Help: "Cohort queries, by outcome (released, throttled).",
		}, []string{"outcome"}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fhiranchor_research_suppressed_total",
			Help: "Counts (totals and cells) suppressed in released cohort answers.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.ingested, m.decisions, m.anchors, m.gas, m.queries, m.suppressed)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Decided counts an access decision (access.Metrics).
func (m *Metrics) Decided(allow bool) {
	if allow {
		m.decisions.WithLabelValues("allow").Inc()
	} else {
		m.decisions.WithLabelValues("deny").Inc()
	}
}

// Queried counts a cohort query and its suppressed counts (research.Metrics).
func (m *Metrics) Queried(released bool, suppressed int) {
	if !released {
		m.queries.WithLabelValues("throttled").Inc()
		return
	}
	m.queries.WithLabelValues("released").Inc()
	m.suppressed.Add(float64(suppressed))
}

// Mined counts an anchor seen mined and its gas (anchor.Metrics).
func (m *Metrics) Mined(gasUsed uint64) {
	m.anchors.Inc()
	m.gas.Add(float64(gasUsed))
}

// request counts one call.
func (m *Metrics) request(method, code string, took time.Duration) {
	if !m.methods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(method, code).Inc()
	m.latency.WithLabelValues(method).Observe(took.Seconds())
}

// stored counts the versions a request stored, by type.
func (m *Metrics) stored(types map[string]int) {
	for typ, n := range types {
		if !fhir.IsResourceType(typ) {
			typ = "other"
		}
		m.ingested.WithLabelValues(typ).Add(float64(n))
	}
}

// sizes reports, when scraped, what the vault, the log and the cohort
// index hold. The vault's and the log's numbers are those of the shared
// database, so every gateway on it reports the same.
type sizes struct {
	vault   vault.Store
	log     *anchor.Log
	index   func() (patients, resources int) // nil without research
	logger  *slog.Logger
	now     func() time.Time
	descs   map[string]*prometheus.Desc
	timeout time.Duration
}

func newSizes(v vault.Store, l *anchor.Log, index func() (int, int), logger *slog.Logger) *sizes {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &sizes{vault: v, log: l, index: index, logger: logger, now: time.Now, timeout: 5 * time.Second,
		descs: map[string]*prometheus.Desc{
			"versions":  d("fhiranchor_vault_versions", "Resource versions in the vault, tombstones included."),
			"leaves":    d("fhiranchor_vault_leaves", "Leaves queued or anchored."),
			"data_keys": d("fhiranchor_vault_data_keys", "Data keys (one per compartment) in the vault."),
			"responses": d("fhiranchor_vault_idempotent_responses", "Idempotent responses remembered."),
			"policies":  d("fhiranchor_vault_policy_versions", "Policy bundle versions stored."),
			"pending":   d("fhiranchor_anchor_leaves_pending", "Leaves not yet covered by an anchor."),
			"age":       d("fhiranchor_anchor_last_age_seconds", "Seconds since the last anchor was mined (or sent, while unmined); absent before the first."),
			"patients":  d("fhiranchor_cohort_index_patients", "Patients in the cohort index of this process."),
			"resources": d("fhiranchor_cohort_index_resources", "Resources in the cohort index of this process."),
		}}
}

// Describe implements prometheus.Collector.
func (s *sizes) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *sizes) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	gauge := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(s.descs[name], prometheus.GaugeValue, v)
	}
	if s.index != nil {
		p, r := s.index()
		gauge("patients", float64(p))
		gauge("resources", float64(r))
	}
	st, err := s.vault.Stats(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "metrics: vault stats", slog.Any("err", err))
		return
	}
	gauge("versions", float64(st.Versions))
	gauge("leaves", float64(st.Leaves))
	gauge("data_keys", float64(st.DataKeys))
	gauge("responses", float64(st.Responses))
	gauge("policies", float64(st.Policies))
	last, err := s.log.LastAnchor(ctx)
	switch {
	case errors.Is(err, anchor.ErrNotFound):
		gauge("pending", float64(st.Leaves))
	case err != nil:
		s.logger.WarnContext(ctx, "metrics: last anchor", slog.Any("err", err))
	default:
		gauge("pending", float64(max(st.Leaves-int64(last.TreeSize), 0)))
		at := last.BlockTime
		if at.IsZero() {
			at = last.Submitted
		}
		if !at.IsZero() {
			gauge("age", max(s.now().Sub(at).Seconds(), 0))
		}
	}
}
