package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The deploy/ manifests and docs/operations.md cannot be run here (no
// Docker, no cluster), so these tests parse them and hold them to the code:
// a config key renamed, an env var added, a port or a probe path changed in
// one place only makes them fail.

// repoFile is a path relative to the repository root.
func depRepoFile(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

func depReadRepoFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(depRepoFile(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// configKeys returns the dotted yaml keys of the config struct's leaves
// (scalars, lists and durations; nested structs are walked).
func depConfigKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, prefix+name+".")
				continue
			}
			keys = append(keys, prefix+name)
		}
	}
	walk(reflect.TypeFor[config](), "")
	sort.Strings(keys)
	return keys
}

// yamlKeys returns the dotted keys of the leaves of a YAML document: keys
// whose value is not a mapping.
func depYamlKeys(t *testing.T, data []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if v.Kind == yaml.MappingNode {
				walk(v, prefix+k+".")
				continue
			}
			keys = append(keys, prefix+k)
		}
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		walk(doc.Content[0], "")
	}
	sort.Strings(keys)
	return keys
}

// serveEnv returns the environment variables serve.go reads, found in its
// source so that a new one has to be documented and deployed.
func depServeEnv(t *testing.T) []string {
	t.Helper()
	src := depReadRepoFile(t, "cmd", "fhiranchor", "serve.go")
	var names []string
	for _, m := range regexp.MustCompile(`getenv\("([A-Z0-9_]+)"\)`).FindAllSubmatch(src, -1) {
		if n := string(m[1]); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Fatal("found no getenv(\"...\") in serve.go")
	}
	sort.Strings(names)
	return names
}

// deployableEnv is what a manifest may set for the gateway: the variables
// serve reads, and PGPASSWORD, which the PostgreSQL driver honours (as
// internal/pgdb documents).
func depDeployableEnv(t *testing.T) []string {
	t.Helper()
	names := depServeEnv(t)
	if !bytes.Contains(depReadRepoFile(t, "internal", "pgdb", "pgdb.go"), []byte("PGPASSWORD")) {
		t.Fatal("internal/pgdb no longer mentions PGPASSWORD: check the manifests that set it")
	}
	return append(names, "PGPASSWORD")
}

// loadDeployConfig loads a config file as serve does (strictly, then
// defaults and validation) and checks its research section builds.
func loadDeployConfig(t *testing.T, path string) *config {
	t.Helper()
	c, err := loadConfig(path, noEnv)
	if err != nil {
		t.Fatalf("loadConfig(%s): %v", path, err)
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rc, err := c.research()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// serve derives the noise key from the master key; any 32 bytes will do.
	rc.Privacy.Key = make([]byte, 32)
	if err := rc.Privacy.Validate(); err != nil {
		t.Fatalf("%s: research: %v", path, err)
	}
	for name, addr := range map[string]string{"http": c.HTTP, "grpc": c.GRPC} {
		if host := depAddrHost(t, addr); host != "0.0.0.0" && host != "" && host != "::" {
			t.Errorf("%s: %s listens on %q: a container must listen on all interfaces", path, name, addr)
		}
	}
	return c
}

func depAddrHost(t *testing.T, addr string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return host
}

func depAddrPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return n
}

// TestDeployConfigs: the sample configs load as serve loads them, and the
// production example sets every key there is.
func TestDeployConfigs(t *testing.T) {
	all := depConfigKeys()
	for _, name := range []string{"production.yaml", "compose.yaml"} {
		t.Run(name, func(t *testing.T) {
			path := depRepoFile("deploy", "config", name)
			loadDeployConfig(t, path)
			if name != "production.yaml" {
				return
			}
			have := depYamlKeys(t, depReadRepoFile(t, "deploy", "config", name))
			for _, k := range all {
				if !slices.Contains(have, k) {
					t.Errorf("%s does not set %s: the example must show every key", path, k)
				}
			}
		})
	}
}

// TestDeployConfigHasNoPassword: the sample configs keep the password out of
// database.url (PGPASSWORD supplies it).
func TestDeployConfigHasNoPassword(t *testing.T) {
	for _, c := range []*config{
		loadDeployConfig(t, depRepoFile("deploy", "config", "production.yaml")),
		loadDeployConfig(t, depRepoFile("deploy", "config", "compose.yaml")),
		loadDeployConfig(t, depWriteTemp(t, k8sConfig(t))),
	} {
		u, err := url.Parse(c.Database.URL)
		if err != nil {
			t.Fatalf("database.url: %v", err)
		}
		if _, set := u.User.Password(); set {
			t.Errorf("database.url %s holds a password", c.Database.URL)
		}
	}
}

func depWriteTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// k8sDoc is one document of a manifest file.
type k8sDoc struct {
	file string
	node *yaml.Node
	head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
	}
}

// k8sDocs parses every deploy/k8s/*.yaml file, multi-document, except the
// kustomization.
func k8sDocs(t *testing.T) []k8sDoc {
	t.Helper()
	files, err := filepath.Glob(depRepoFile("deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml (%v)", err)
	}
	var docs []k8sDoc
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			d := k8sDoc{file: filepath.Base(f), node: &n}
			if err := n.Decode(&d.head); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d.head.APIVersion == "" || d.head.Kind == "" || d.head.Metadata.Name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			docs = append(docs, d)
		}
	}
	return docs
}

// k8sOne decodes the one document of kind into v and returns its name.
func k8sOne(t *testing.T, docs []k8sDoc, kind string, v any) string {
	t.Helper()
	var found []k8sDoc
	for _, d := range docs {
		if d.head.Kind == kind {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("deploy/k8s has %d %s objects, want 1", len(found), kind)
	}
	if err := found[0].node.Decode(v); err != nil {
		t.Fatalf("%s: %v", found[0].file, err)
	}
	return found[0].head.Metadata.Name
}

// k8sConfig returns the config file embedded in the ConfigMap.
func k8sConfig(t *testing.T) []byte {
	t.Helper()
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	k8sOne(t, k8sDocs(t), "ConfigMap", &cm)
	data, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no config.yaml")
	}
	return []byte(data)
}

type k8sPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type k8sEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sContainer struct {
	Name    string    `yaml:"name"`
	Image   string    `yaml:"image"`
	Command []string  `yaml:"command"`
	Args    []string  `yaml:"args"`
	Ports   []k8sPort `yaml:"ports"`
	Env     []k8sEnv  `yaml:"env"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	ReadinessProbe  k8sProbe `yaml:"readinessProbe"`
	LivenessProbe   k8sProbe `yaml:"livenessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type k8sDeployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    *int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
					EmptyDir              *yaml.Node `yaml:"emptyDir"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// probePort resolves a probe's port (number or name) to a container port.
func depProbePort(t *testing.T, c k8sContainer, p k8sProbe, what string) (path string, port int) {
	t.Helper()
	if p.HTTPGet == nil {
		t.Fatalf("container %s: %s is not an httpGet probe", c.Name, what)
	}
	if n, err := strconv.Atoi(p.HTTPGet.Port.Value); err == nil {
		return p.HTTPGet.Path, n
	}
	for _, cp := range c.Ports {
		if cp.Name == p.HTTPGet.Port.Value {
			return p.HTTPGet.Path, cp.ContainerPort
		}
	}
	t.Fatalf("container %s: %s port %q is not a named container port", c.Name, what, p.HTTPGet.Port.Value)
	return "", 0
}

// flagValue returns the value of --name in args ("--name v" or "--name=v").
func depFlagValue(args []string, name string) string {
	for i, a := range args {
		for _, dash := range []string{"-", "--"} {
			if a == dash+name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, dash+name+"="); ok {
				return v
			}
		}
	}
	return ""
}

// underAny reports whether p is one of dirs or inside one.
func depUnderAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// TestDeployKubernetes: the manifests parse, and the Deployment agrees with
// the config it mounts, the Secret, the PVC, the Service and serve's env.
func TestDeployKubernetes(t *testing.T) {
	docs := k8sDocs(t)
	var dep k8sDeployment
	k8sOne(t, docs, "Deployment", &dep)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	cmName := k8sOne(t, docs, "ConfigMap", &cm)
	var secret struct {
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
	}
	secretName := k8sOne(t, docs, "Secret", &secret)
	var pvc struct {
		Spec struct {
			AccessModes []string `yaml:"accessModes"`
		} `yaml:"spec"`
	}
	pvcName := k8sOne(t, docs, "PersistentVolumeClaim", &pvc)
	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string    `yaml:"name"`
				Port       int       `yaml:"port"`
				TargetPort yaml.Node `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	k8sOne(t, docs, "Service", &svc)

	// The config the Deployment mounts is a valid serve config.
	cfgPath := depWriteTemp(t, k8sConfig(t))
	c := loadDeployConfig(t, cfgPath)

	s := dep.Spec
	if s.Replicas < 2 {
		t.Errorf("Deployment replicas = %d, want >= 2", s.Replicas)
	}
	labels := s.Template.Metadata.Labels
	for k, v := range s.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod labels %v", k, v, labels)
		}
	}
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, labels)
		}
	}
	ps := s.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("the pod has %d containers, want 1", len(ps.Containers))
	}
	ctr := ps.Containers[0]

	// serve's arguments and the mounted config.
	args := append(slices.Clone(ctr.Command), ctr.Args...)
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("container args %q do not run serve", args)
	}
	configArg := depFlagValue(args, "config")
	if configArg == "" {
		t.Fatalf("container args %q have no --config", args)
	}
	volumes := map[string]int{}
	for i, v := range ps.Volumes {
		volumes[v.Name] = i
	}
	var writable, mounted []string
	configMounted := false
	for _, m := range ctr.VolumeMounts {
		i, ok := volumes[m.Name]
		if !ok {
			t.Errorf("volumeMount %s names no volume", m.Name)
			continue
		}
		v := ps.Volumes[i]
		mounted = append(mounted, m.MountPath)
		if !m.ReadOnly && (v.EmptyDir != nil || v.PersistentVolumeClaim != nil) {
			writable = append(writable, m.MountPath)
		}
		if v.ConfigMap != nil && v.ConfigMap.Name == cmName {
			_, inMap := cm.Data[m.SubPath]
			if (m.SubPath != "" && m.MountPath == configArg && inMap) ||
				(m.SubPath == "" && path.Join(m.MountPath, path.Base(configArg)) == configArg && cm.Data[path.Base(configArg)] != "") {
				configMounted = true
			}
		}
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName != pvcName {
			t.Errorf("volume %s claims %q; the PVC is %q", v.Name, v.PersistentVolumeClaim.ClaimName, pvcName)
		}
	}
	if !configMounted {
		t.Errorf("--config %s is not a file of the ConfigMap %s mounted in the container", configArg, cmName)
	}
	// The root filesystem is read-only: what serve writes must be on volumes.
	if !depUnderAny(c.Data, writable) {
		t.Errorf("data %s is not on a writable volume (writable: %v)", c.Data, writable)
	}
	exportsOnPVC := false
	for _, m := range ctr.VolumeMounts {
		if v := ps.Volumes[volumes[m.Name]]; v.PersistentVolumeClaim != nil && depUnderAny(c.Research.ExportDir, []string{m.MountPath}) {
			exportsOnPVC = true
		}
	}
	if !exportsOnPVC {
		t.Errorf("research.export_dir %s is not on the PVC", c.Research.ExportDir)
	}
	if !slices.Contains(pvc.Spec.AccessModes, "ReadWriteMany") {
		t.Errorf("PVC %s access modes %v: every replica writes exports, want ReadWriteMany", pvcName, pvc.Spec.AccessModes)
	}
	for _, k := range c.Auth.Keys {
		if !depUnderAny(k, mounted) {
			t.Errorf("auth.keys file %s is on no mounted volume", k)
		}
	}

	// Ports and probes follow the config's listen addresses.
	httpPort, grpcPort := depAddrPort(t, c.HTTP), depAddrPort(t, c.GRPC)
	named := map[string]int{}
	for _, p := range ctr.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["http"] != httpPort || named["grpc"] != grpcPort {
		t.Errorf("container ports %v, want http %d and grpc %d (the config's http and grpc)", ctr.Ports, httpPort, grpcPort)
	}
	if p, port := depProbePort(t, ctr, ctr.ReadinessProbe, "readinessProbe"); p != "/readyz" || port != httpPort {
		t.Errorf("readinessProbe GET %s on port %d, want /readyz on %d", p, port, httpPort)
	}
	if p, port := depProbePort(t, ctr, ctr.LivenessProbe, "livenessProbe"); p != "/healthz" || port != httpPort {
		t.Errorf("livenessProbe GET %s on port %d, want /healthz on %d", p, port, httpPort)
	}
	svcPorts := map[int]bool{}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort.Value
		if n, err := strconv.Atoi(target); err == nil {
			svcPorts[n] = true
		} else if n, ok := named[target]; ok {
			svcPorts[n] = true
		} else {
			t.Errorf("Service port %s targets %q, not a container port", p.Name, target)
		}
	}
	if !svcPorts[httpPort] || !svcPorts[grpcPort] {
		t.Errorf("the Service does not expose both %d and %d", httpPort, grpcPort)
	}

	// Security.
	nonRoot := ps.SecurityContext.RunAsNonRoot
	if ctr.SecurityContext.RunAsNonRoot != nil {
		nonRoot = ctr.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("runAsNonRoot is not set")
	}
	if r := ctr.SecurityContext.ReadOnlyRootFilesystem; r == nil || !*r {
		t.Error("readOnlyRootFilesystem is not set")
	}
	if ctr.Resources.Requests["memory"] == "" || ctr.Resources.Limits["memory"] == "" {
		t.Error("the container has no memory request and limit")
	}

	// Secrets: every env var taken from the Secret is one serve reads, every
	// key of the Secret is used.
	allowed := depDeployableEnv(t)
	secretKeys := map[string]bool{}
	for k := range secret.StringData {
		secretKeys[k] = false
	}
	for k := range secret.Data {
		secretKeys[k] = false
	}
	for _, e := range ctr.EnvFrom {
		if e.SecretRef != nil {
			t.Errorf("envFrom secret %s: name each variable, so that only ones serve reads are set", e.SecretRef.Name)
		}
	}
	fromSecret := 0
	for _, e := range ctr.Env {
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil {
			if slices.Contains(allowed, e.Name) {
				t.Errorf("env %s is set in clear in the Deployment; take it from the Secret", e.Name)
			}
			continue
		}
		fromSecret++
		if !slices.Contains(allowed, e.Name) {
			t.Errorf("env %s (from the Secret) is not read by serve; serve reads %v", e.Name, allowed)
		}
		if ref.Name != secretName {
			t.Errorf("env %s comes from Secret %q; the Secret is %q", e.Name, ref.Name, secretName)
			continue
		}
		if _, ok := secretKeys[ref.Key]; !ok {
			t.Errorf("env %s reads key %q, which the Secret lacks", e.Name, ref.Key)
		}
		secretKeys[ref.Key] = true
	}
	for k, used := range secretKeys {
		if !used {
			t.Errorf("Secret key %s is referenced by no env var of the Deployment", k)
		}
	}
	if fromSecret == 0 || !slices.ContainsFunc(ctr.Env, func(e k8sEnv) bool {
		return e.Name == "FHIRANCHOR_MASTER_KEY" && e.ValueFrom.SecretKeyRef != nil
	}) {
		t.Error("FHIRANCHOR_MASTER_KEY does not come from the Secret: each pod would make its own master key")
	}

	// The kustomization lists files that exist.
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if data, err := os.ReadFile(depRepoFile("deploy", "k8s", "kustomization.yaml")); err == nil {
		if err := yaml.Unmarshal(data, &kust); err != nil {
			t.Fatalf("kustomization.yaml: %v", err)
		}
		for _, r := range kust.Resources {
			if _, err := os.Stat(depRepoFile("deploy", "k8s", r)); err != nil {
				t.Errorf("kustomization.yaml lists %s: %v", r, err)
			}
		}
	}
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command   []string `yaml:"command"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// TestDeployCompose: compose.yaml runs postgres, geth and at least two
// gateways built from deploy/Dockerfile on the config it mounts, with
// secrets from the .env file only.
func TestDeployCompose(t *testing.T) {
	raw := depReadRepoFile(t, "deploy", "compose.yaml")
	var cf struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	pg, ok := cf.Services["postgres"]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:") {
		t.Fatalf("no postgres service (image %q)", pg.Image)
	}
	if pg.Healthcheck == nil || !strings.Contains(strings.Join(pg.Healthcheck.Test, " "), "pg_isready") {
		t.Error("postgres has no pg_isready healthcheck")
	}
	geth, ok := cf.Services["geth"]
	if !ok || !strings.HasPrefix(geth.Image, "ethereum/client-go:") {
		t.Fatalf("no geth service (image %q)", geth.Image)
	}
	gethArgs := strings.Join(geth.Command, " ")
	for _, want := range []string{"--dev", "--http", "0.0.0.0", "--http.vhosts"} {
		if !strings.Contains(gethArgs, want) {
			t.Errorf("geth command %q lacks %s", gethArgs, want)
		}
	}

	allowed := depDeployableEnv(t)
	example := string(depReadRepoFile(t, "deploy", ".env.example"))
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if !seen[m[1]] && !regexp.MustCompile(`(?m)^`+m[1]+`=`).MatchString(example) {
			t.Errorf("compose.yaml uses ${%s}, which deploy/.env.example does not list", m[1])
		}
		seen[m[1]] = true
	}

	var gateways []string
	for name, s := range cf.Services {
		if s.Build != nil && path.Clean(path.Join("deploy", s.Build.Context, s.Build.Dockerfile)) == "deploy/Dockerfile" &&
			path.Clean(path.Join("deploy", s.Build.Context)) == "." && len(s.Command) > 0 && s.Command[0] == "serve" {
			gateways = append(gateways, name)
		}
	}
	sort.Strings(gateways)
	if len(gateways) < 2 {
		t.Fatalf("gateways built from deploy/Dockerfile running serve: %v, want >= 2", gateways)
	}
	hostPorts := map[string]string{}
	var exportVolumes, dataVolumes []string
	for _, name := range gateways {
		s := cf.Services[name]
		if s.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for postgres to be healthy", name)
		}
		if _, ok := s.DependsOn["geth"]; !ok {
			t.Errorf("%s does not depend on geth", name)
		}
		for k, v := range s.Environment {
			if !slices.Contains(allowed, k) {
				t.Errorf("%s sets %s, which serve does not read (it reads %v)", name, k, allowed)
			}
			if !strings.HasPrefix(v, "${") {
				t.Errorf("%s sets %s in clear; take it from the .env file", name, k)
			}
		}
		configArg := depFlagValue(s.Command, "config")
		mounts := map[string]string{} // container path -> source
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Fatalf("%s volume %q has no target", name, v)
			}
			mounts[parts[1]] = parts[0]
		}
		src, ok := mounts[configArg]
		if !ok {
			t.Fatalf("%s: --config %q is not mounted", name, configArg)
		}
		c := loadDeployConfig(t, filepath.Join(depRepoFile("deploy"), filepath.FromSlash(src)))
		if want := "postgres"; depHostOf(t, c.Database.URL) != want {
			t.Errorf("%s: database.url host %q, want the %s service", name, depHostOf(t, c.Database.URL), want)
		}
		if want := "geth"; depHostOf(t, c.Chain.RPCURL) != want {
			t.Errorf("%s: chain.rpc_url host %q, want the %s service", name, depHostOf(t, c.Chain.RPCURL), want)
		}
		exportVolumes = append(exportVolumes, mounts[c.Research.ExportDir])
		dataVolumes = append(dataVolumes, mounts[c.Data])
		for _, k := range c.Auth.Keys {
			var targets []string
			for target := range mounts {
				targets = append(targets, target)
			}
			if !depUnderAny(k, targets) {
				t.Errorf("%s: auth.keys file %s is on no mounted volume", name, k)
			}
		}
		httpPort := strconv.Itoa(depAddrPort(t, c.HTTP))
		publishesHTTP := false
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if parts[len(parts)-1] == httpPort {
				publishesHTTP = true
			}
			host := strings.Join(parts[:len(parts)-1], ":")
			if other, dup := hostPorts[host]; dup {
				t.Errorf("%s and %s both publish %s", other, name, host)
			}
			hostPorts[host] = name
		}
		if !publishesHTTP {
			t.Errorf("%s does not publish the http port %s", name, httpPort)
		}
	}
	// Exports are shared, data dirs are not.
	for i, v := range exportVolumes {
		if v == "" || v != exportVolumes[0] {
			t.Errorf("research.export_dir of %s is volume %q; every gateway must mount one shared volume", gateways[i], v)
		}
		if _, ok := cf.Volumes[v]; !ok {
			t.Errorf("export volume %q is not a named volume of compose.yaml", v)
		}
	}
	for i, v := range dataVolumes {
		if v == "" || slices.Index(dataVolumes, v) != i {
			t.Errorf("data dir of %s is volume %q; each gateway needs its own", gateways[i], v)
		}
	}
}

func depHostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("%q: %v", rawURL, err)
	}
	return u.Hostname()
}

// TestDeployDockerfile: a multi-stage build on go.mod's Go version, whose
// image runs serve as non-root with the directories the configs use.
func TestDeployDockerfile(t *testing.T) {
	var lines []string
	cont := ""
	for _, l := range strings.Split(string(depReadRepoFile(t, "deploy", "Dockerfile")), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cont += s + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	var stages [][]string // instructions per FROM
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %q", l)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], l)
	}
	if len(stages) < 2 {
		t.Fatalf("%d FROM stages, want a build and a runtime stage", len(stages))
	}

	gomod := depReadRepoFile(t, "go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	build := stages[0]
	img := regexp.MustCompile(`^FROM\s+golang:(\d+\.\d+)[-.\s]`).FindStringSubmatch(build[0] + " ")
	if img == nil || img[1] != string(m[1]) {
		t.Errorf("build stage %q: want golang:%s (go.mod's go directive)", build[0], m[1])
	}
	built := false
	for _, stage := range stages[:len(stages)-1] {
		for _, l := range stage {
			if strings.Contains(l, "go build") && strings.Contains(l, "./cmd/fhiranchor") && strings.Contains(l, "CGO_ENABLED=0") {
				built = true
			}
		}
	}
	if !built {
		t.Error("no stage runs CGO_ENABLED=0 go build ... ./cmd/fhiranchor")
	}

	final := stages[len(stages)-1]
	var user, entrypoint, cmd string
	var expose, dirs []string
	for _, l := range final {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(l[len(f[0]):])
		case "CMD":
			cmd = strings.TrimSpace(l[len(f[0]):])
		case "EXPOSE":
			expose = append(expose, f[1:]...)
		case "COPY":
			if strings.Contains(l, "--chown=") {
				dirs = append(dirs, f[len(f)-1])
			}
		}
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
		t.Errorf("the final stage runs as %q, want a non-root user", user)
	}
	if !strings.Contains(final[0], ":nonroot") && user != "nonroot" && user != "65532" {
		t.Errorf("final stage %q, user %q: want distroless nonroot", final[0], user)
	}
	if entrypoint != `["/fhiranchor"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/fhiranchor\"]", entrypoint)
	}
	if !strings.Contains(cmd, `"serve"`) || !strings.Contains(cmd, `"--config"`) {
		t.Errorf("CMD %s does not run serve --config", cmd)
	}

	// The compose config's listen ports are exposed, and its data and export
	// dirs exist in the image owned by the runtime user (named volumes
	// mounted there start with that ownership).
	c := loadDeployConfig(t, depRepoFile("deploy", "config", "compose.yaml"))
	for _, p := range []int{depAddrPort(t, c.HTTP), depAddrPort(t, c.GRPC)} {
		if !slices.Contains(expose, strconv.Itoa(p)) {
			t.Errorf("EXPOSE %v lacks %d", expose, p)
		}
	}
	for _, d := range []string{c.Data, c.Research.ExportDir} {
		if !slices.Contains(dirs, d) {
			t.Errorf("the image has no directory %s owned by the runtime user (COPY --chown targets: %v)", d, dirs)
		}
	}

	ignore := string(depReadRepoFile(t, ".dockerignore"))
	for _, want := range []string{".git", "node_modules", "deploy/.env"} {
		if !strings.Contains(ignore, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// TestDeployOperationsDoc: docs/operations.md documents every config key and
// every env variable serve reads, and its config table names real keys only.
func TestDeployOperationsDoc(t *testing.T) {
	doc := string(depReadRepoFile(t, "docs", "operations.md"))
	keys := depConfigKeys()
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/operations.md does not mention `%s`", k)
		}
	}
	for _, e := range depDeployableEnv(t) {
		if !strings.Contains(doc, "`"+e+"`") {
			t.Errorf("docs/operations.md does not mention `%s`", e)
		}
	}
	// Every FHIRANCHOR_ variable the doc names is read by the binary.
	var src []byte
	files, _ := filepath.Glob(depRepoFile("cmd", "fhiranchor", "*.go"))
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src = append(src, b...)
		}
	}
	var c config
	keyVars := map[string]bool{}
	for k := range envKeys(&c) {
		keyVars[envName(k)] = true // read by applyEnv
	}
	for _, v := range regexp.MustCompile(`FHIRANCHOR_[A-Z0-9_]*[A-Z0-9]`).FindAllString(doc, -1) {
		if !bytes.Contains(src, []byte(`getenv("`+v+`")`)) && !keyVars[v] {
			t.Errorf("docs/operations.md names %s, which cmd/fhiranchor does not read", v)
		}
	}

	// The config table: the one whose header's first cell is "key".
	rows := depMarkdownTable(doc, "key")
	if len(rows) == 0 {
		t.Fatal("docs/operations.md has no table whose first column is \"key\"")
	}
	var listed []string
	for _, r := range rows {
		k := strings.Trim(r[0], "` ")
		listed = append(listed, k)
		if !slices.Contains(keys, k) {
			t.Errorf("the config table lists %q, which is not a config key", r[0])
		}
	}
	for _, k := range keys {
		if !slices.Contains(listed, k) {
			t.Errorf("the config table does not list %s", k)
		}
	}
}

// markdownTable returns the body rows (cells trimmed) of the first table in
// doc whose header's first cell is first.
func depMarkdownTable(doc, first string) [][]string {
	cells := func(l string) []string {
		l = strings.Trim(strings.TrimSpace(l), "|")
		var out []string
		for _, c := range strings.Split(l, "|") {
			out = append(out, strings.TrimSpace(c))
		}
		return out
	}
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "|") || cells(l)[0] != first {
			continue
		}
		var rows [][]string
		for _, r := range lines[i+2:] {
			if !strings.HasPrefix(strings.TrimSpace(r), "|") {
				break
			}
			rows = append(rows, cells(r))
		}
		return rows
	}
	return nil
}

// TestDeployProbesServed: the paths the Deployment probes are served by a
// real `fhiranchor serve` (embedded defaults), with 200 (readiness once the
// gateway is ready).
func TestDeployProbesServed(t *testing.T) {
	var dep k8sDeployment
	k8sOne(t, k8sDocs(t), "Deployment", &dep)
	ctr := dep.Spec.Template.Spec.Containers[0]
	var paths []string
	for _, p := range []k8sProbe{ctr.ReadinessProbe, ctr.LivenessProbe} {
		if p.HTTPGet == nil {
			t.Fatal("a probe is not httpGet")
		}
		paths = append(paths, p.HTTPGet.Path)
	}
	base, _ := startServe(t, t.TempDir(), noEnv)
	root := strings.TrimSuffix(base, "/fhir/r4")
	client := &http.Client{Timeout: 10 * time.Second}
	for _, p := range paths {
		// A probe polls: readiness waits for the cohort index, which a
		// fresh gateway loads in the background for a moment after it
		// listens (503 with Retry-After until then).
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := client.Get(root + p)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Errorf("GET %s = %d %s, want 200", p, resp.StatusCode, body)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
