package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/metrics"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// manifests is every Kubernetes object under deploy/, decoded strictly: an
// unknown or misspelt field, a duplicate key or a kind this test does not
// know fails.
type manifests struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	services        []corev1.Service
	daemonSets      []appsv1.DaemonSet
	// order lists the kinds as `kubectl apply -f deploy/` meets them.
	order []string
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("deploy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under deploy/: %v", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var into any
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				m.namespaces = append(m.namespaces, corev1.Namespace{})
				into = &m.namespaces[len(m.namespaces)-1]
			case "v1 ServiceAccount":
				m.serviceAccounts = append(m.serviceAccounts, corev1.ServiceAccount{})
				into = &m.serviceAccounts[len(m.serviceAccounts)-1]
			case "v1 Service":
				m.services = append(m.services, corev1.Service{})
				into = &m.services[len(m.services)-1]
			case "apps/v1 DaemonSet":
				m.daemonSets = append(m.daemonSets, appsv1.DaemonSet{})
				into = &m.daemonSets[len(m.daemonSets)-1]
			default:
				t.Fatalf("%s #%d: %s %s is no kind this test checks", f, i, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, meta.Kind, err)
			}
			m.order = append(m.order, meta.Kind)
		}
	}
	if len(m.namespaces) != 1 || len(m.serviceAccounts) != 1 || len(m.services) != 1 || len(m.daemonSets) != 1 {
		t.Fatalf("want one Namespace, ServiceAccount, Service and DaemonSet; have %d, %d, %d, %d",
			len(m.namespaces), len(m.serviceAccounts), len(m.services), len(m.daemonSets))
	}
	return m
}

func stripComments(doc string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")
}

// manifestCaps are the capabilities the DaemonSet adds, and the only ones
// tcpvet may hold there: README.md says what each is for, and
// TestDaemonSetCapabilities shows each is needed and that they suffice.
var manifestCaps = []string{"DAC_READ_SEARCH", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}

// TestManifests decodes every manifest strictly into the Kubernetes API's
// own types and holds the DaemonSet to what the README promises.
func TestManifests(t *testing.T) {
	m := loadManifests(t)
	ns, sa, svc, ds := m.namespaces[0], m.serviceAccounts[0], m.services[0], m.daemonSets[0]

	for what, got := range map[string]string{"ServiceAccount": sa.Namespace, "Service": svc.Namespace, "DaemonSet": ds.Namespace} {
		if got != ns.Name {
			t.Errorf("%s in namespace %q, want %q", what, got, ns.Name)
		}
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace enforces pod security %q: hostPID needs privileged", got)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount mounts a token tcpvet never uses")
	}

	// kubectl applies a directory's files in the order of their names: the
	// namespace and the account must exist before what uses them.
	if want := []string{"Namespace", "ServiceAccount", "DaemonSet", "Service"}; !slices.Equal(m.order, want) {
		t.Errorf("kubectl apply -f deploy/ creates %v, want %v", m.order, want)
	}

	pod := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the DaemonSet's selector %s=%s does not select its own pods", k, v)
		}
	}
	if !pod.HostPID {
		t.Error("hostPID is off: /proc would show no other pod's processes")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork is on: the node's namespace is reached through /proc/1/ns/net, and the port would open on the node")
	}
	if pod.ServiceAccountName != sa.Name || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pods run as %q with token %v; want %q without", pod.ServiceAccountName, pod.AutomountServiceAccountToken, sa.Name)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want one container, have %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/tcpvet/tcpvet:") {
		t.Errorf("image %q is not the released ghcr.io/tcpvet/tcpvet (.goreleaser.yaml)", c.Image)
	}

	// The arguments parse as tcpvet's own command line would, and serve on
	// the port the container and the Service name.
	cfg, err := parseFlags(c.Args, &bytes.Buffer{})
	if err != nil {
		t.Errorf("args %q: %v", c.Args, err)
	}
	if !slices.Contains(c.Args, "--all-netns") {
		t.Errorf("args %q do not sweep every namespace", c.Args)
	}
	port := 0
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			port = int(p.ContainerPort)
		}
	}
	if want := fmt.Sprintf(":%d", port); port == 0 || cfg.serve != want {
		t.Errorf("--serve %q, container port %d named metrics", cfg.serve, port)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "metrics" || svc.Spec.ClusterIP != "None" {
		t.Errorf("the Service is not headless onto the port named metrics: %+v", svc.Spec)
	}
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the Service's selector %s=%s selects no tcpvet pod", k, v)
		}
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext with capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drops %v, want ALL", sc.Capabilities.Drop)
	}
	var added []string
	for _, c := range sc.Capabilities.Add {
		added = append(added, string(c))
	}
	slices.Sort(added)
	if !slices.Equal(added, manifestCaps) {
		t.Errorf("adds %v, want exactly %v", added, manifestCaps)
	}
	for what, v := range map[string]*bool{"readOnlyRootFilesystem": sc.ReadOnlyRootFilesystem} {
		if v == nil || !*v {
			t.Errorf("%s is not true", what)
		}
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged is not false")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		// Kubernetes refuses this beside CAP_SYS_ADMIN, for it means
		// nothing there; it accepts the spelling SYS_ADMIN by oversight.
		t.Error("allowPrivilegeEscalation: false claims a boundary SYS_ADMIN does not keep")
	}
	if psc := pod.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("no RuntimeDefault seccomp profile")
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v, limit %v; want both, request at most limit", r, req.String(), lim.String())
		}
	}
	// 190 MiB is the most a --serve took here, sweeping 84,000 sockets in
	// 257 namespaces (README.md); the Go runtime must aim below the limit.
	lim := c.Resources.Limits[corev1.ResourceMemory]
	if lim.Cmp(resource.MustParse("256Mi")) < 0 {
		t.Errorf("memory limit %v is below what a sweep of a busy node takes", lim.String())
	}
	goLimit := ""
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goLimit = strings.TrimSuffix(e.Value, "B") // Go's MiB is Kubernetes' Mi
		}
	}
	if q, err := resource.ParseQuantity(goLimit); err != nil || q.Cmp(lim) >= 0 {
		t.Errorf("GOMEMLIMIT %q is not below the memory limit %v", goLimit, lim.String())
	}

	for what, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("%s probe is not GET /healthz on the metrics port: %+v", what, p)
		}
	}

	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		switch {
		case !ok:
			t.Errorf("mount %s: no volume %q", vm.MountPath, vm.Name)
		case !vm.ReadOnly:
			t.Errorf("mount %s of %s is writable: tcpvet only reads", vm.MountPath, vm.Name)
		case v.HostPath == nil:
			t.Errorf("volume %s is not the host's", vm.Name)
		}
	}
	// What the sweep opens on the node must be where it looks: the bound
	// namespaces, and containerd's CRI socket (the first of the sweep's
	// node.CRISockets).
	for _, want := range []string{"/run/netns", "/run/containerd/containerd.sock"} {
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == want }) {
			t.Errorf("nothing mounted at %s", want)
		}
	}
}

// TestAlertRules runs promtool over the example alerting rules: they parse,
// their unit tests (when each alert fires, and when not) pass, and every
// tcpvet_ metric they name is one the exporter serves.
func TestAlertRules(t *testing.T) {
	_, promtool := prometheusTools(t)
	dir := "deploy/prometheus"
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// The scrape configuration, through promtool too. Debian's Prometheus
	// is built without Kubernetes discovery, so the copy checked here
	// finds its targets statically; the relabelling, the rule files and
	// the rest are checked as written.
	b, err := os.ReadFile(filepath.Join(dir, "scrape.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var scrape map[string]any
	if err := yaml.Unmarshal(b, &scrape); err != nil {
		t.Fatal(err)
	}
	job := scrape["scrape_configs"].([]any)[0].(map[string]any)
	if job["job_name"] != "tcpvet" || job["kubernetes_sd_configs"] == nil {
		t.Fatalf("scrape.yaml: no tcpvet job discovering Kubernetes endpoints: %v", job)
	}
	m := loadManifests(t)
	keep := fmt.Sprint(job["relabel_configs"].([]any)[0].(map[string]any)["regex"])
	if want := m.services[0].Name + ";" + m.services[0].Spec.Ports[0].Name; keep != want {
		t.Errorf("scrape.yaml keeps endpoints %q, but the Service and its port are %q", keep, want)
	}
	delete(job, "kubernetes_sd_configs")
	job["static_configs"] = []any{map[string]any{"targets": []any{"127.0.0.1:9393"}}}
	tmp := t.TempDir()
	out, err := yaml.Marshal(scrape)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(filepath.Join(dir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"scrape.yaml": out, "alerts.yaml": alerts} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(tmp, "scrape.yaml")).CombinedOutput(); err != nil {
		t.Errorf("promtool check config scrape.yaml: %v\n%s", err, out)
	}

	// Every series the rules read exists.
	served := servedMetricNames(t)
	for _, name := range regexp.MustCompile(`\btcpvet_[a-z_]+`).FindAllString(string(alerts), -1) {
		if !served[name] {
			t.Errorf("alerts.yaml reads %s, which the exporter does not serve", name)
		}
	}
}

// servedMetricNames scrapes an exporter that has seen one sweep.
func servedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	c := metrics.NewCollector()
	snap := &diag.Snapshot{Sockets: []diag.Socket{{State: diag.Established}}}
	c.Update(&node.Sweep{Namespaces: []node.Namespace{{Inode: 1, Snapshot: snap, Report: rules.Report{Findings: []rules.Finding{{Rule: rules.RuleHalfOpen, Severity: rules.Critical}}}}}})
	rec := httptest.NewRecorder()
	metrics.Handler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(tcpvet_[a-z_]+)`).FindAllStringSubmatch(rec.Body.String(), -1) {
		names[m[1]] = true
	}
	if len(names) < 4 {
		t.Fatalf("the exporter serves %v", names)
	}
	return names
}

// TestDaemonSetCapabilities runs tcpvet with only the capabilities the
// DaemonSet grants, as uid 0 like the DaemonSet, on a namespace whose
// sockets belong to another user, with keepalive set on one of them, and a
// firewall: it sees exactly what unrestricted root sees. Dropping any one
// of them loses something, which is why each is there.
func TestDaemonSetCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tool := range []string{"setpriv", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deb-packages)", tool)
		}
	}
	bin := binary(t)
	ns := testnet.New(t)
	// A firewall that tracks connections, so that tcpvet reads conntrack
	// and the ruleset (conntrack -L loads nf_conntrack_netlink where it is
	// a module; tcpvet never loads one).
	ns.Run(t, "nft", "add table inet fw")
	ns.Run(t, "nft", "add chain inet fw in { type filter hook input priority 0 ; }")
	ns.Run(t, "nft", "add rule inet fw in ct state established accept")
	ns.Run(t, "conntrack", "-L")
	// A server and a client as nobody: /proc/PID/fd of theirs is 0500 and
	// not root's, and their keepalive is theirs alone to read.
	nobody := []string{"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"}
	for _, args := range [][]string{
		{"socat", "TCP-LISTEN:7001,reuseaddr", "SYSTEM:sleep 600"},
		{"socat", "-u", "TCP:127.0.0.1:7001,retry=50,interval=0.1,keepalive,keepidle=77", "SYSTEM:sleep 600"},
	} {
		cmd := exec.Command("ip", append(append([]string{"netns", "exec", ns.Name}, nobody...), args...)...)
		// ip netns exec forks: the group goes, socat and its children with it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	}

	type seen struct {
		Exit      int
		Notes     []diag.Note
		Sockets   []string
		Conntrack int // flows read from the namespace's table
	}
	look := func(caps []string) seen {
		t.Helper()
		args := []string{bin, "--json", "--netns", ns.Path}
		if caps != nil {
			set := "-all"
			for _, c := range caps {
				set += ",+" + strings.ToLower(c)
			}
			args = append([]string{"setpriv", "--bounding-set", set, "--inh-caps", "-all", "--"}, args...)
		}
		out, err := exec.Command(args[0], args[1:]...).Output()
		var s seen
		if ee, ok := err.(*exec.ExitError); ok {
			s.Exit = ee.ExitCode()
			return s
		} else if err != nil {
			t.Fatal(err)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("decode: %v", err)
		}
		s.Notes = r.Notes
		if ct := r.Target.Conntrack; ct != nil {
			s.Conntrack = ct.Flows
		}
		for _, sk := range r.Sockets {
			var pids []int
			for _, p := range sk.Processes {
				pids = append(pids, p.PID)
			}
			slices.Sort(pids)
			ka := sk.Keepalive.Source
			if k := sk.Keepalive; k.Enabled != nil && k.IdleS != nil {
				ka = fmt.Sprintf("%s/%v/%d", k.Source, *k.Enabled, *k.IdleS)
			}
			s.Sockets = append(s.Sockets, fmt.Sprintf("%v %v->%v pids=%v keepalive=%s", sk.State, sk.Local, sk.Remote, pids, ka))
		}
		slices.Sort(s.Sockets)
		return s
	}

	// Wait for the client's connection (socat's listener closes once it
	// has accepted it), as root sees it.
	var root seen
	for range 50 {
		root = look(nil)
		if len(root.Sockets) == 2 && strings.Contains(strings.Join(root.Sockets, "\n"), "socket/true/77") && root.Conntrack > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(strings.Join(root.Sockets, "\n"), "socket/true/77") || root.Conntrack == 0 {
		t.Fatalf("root does not see the client's own keepalive and the conntrack flows: %+v", root)
	}
	if got := look(manifestCaps); !reflect.DeepEqual(got, root) {
		t.Errorf("with the DaemonSet's capabilities tcpvet sees\n%v\nbut root sees\n%v", got, root)
	}
	// What each capability is for, as tcpvet's output shows its absence.
	lost := map[string]func(seen) bool{
		"SYS_ADMIN":       func(s seen) bool { return s.Exit != 0 }, // no setns: no namespace at all
		"SYS_PTRACE":      func(s seen) bool { return strings.Contains(fmt.Sprint(s.Sockets), "keepalive=unknown") },
		"DAC_READ_SEARCH": func(s seen) bool { return strings.Contains(fmt.Sprint(s.Sockets), "pids=[]") },
		"NET_ADMIN": func(s seen) bool {
			return slices.ContainsFunc(s.Notes, func(n diag.Note) bool {
				return n.Code == diag.NoteConntrackUnread && strings.Contains(n.Text, "conntrack unreadable without CAP_NET_ADMIN")
			})
		},
	}
	for _, drop := range manifestCaps {
		less := slices.DeleteFunc(slices.Clone(manifestCaps), func(c string) bool { return c == drop })
		if got := look(less); !lost[drop](got) {
			t.Errorf("without %s tcpvet still sees what it is for: %+v", drop, got)
		}
	}
}
