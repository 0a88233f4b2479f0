package syslog

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
)

// Defaults chosen for Papertrail on a Kubernetes node: the "system" (HOSTNAME) is the node,
// the "program" (APP-NAME) is namespace/container, PROCID is the pod and MSGID the stream,
// so that Papertrail's system and program filters follow the cluster's own names.
const (
	defaultHostname = `${NODE_NAME}||$kubernetes['host']`
	defaultAppname  = `$kubernetes['namespace_name']/$kubernetes['container_name']||$TAG[0]`
	defaultProcid   = `$kubernetes['pod_name']`
	defaultMsgid    = `$stream`
	defaultSDID     = "k8s@32473" // 32473 is the enterprise number RFC 5612 reserves for examples
	tokenEnterprise = "41058"     // the enterprise number of the token's SD-ID (SolarWinds, Loggly)
	maxToken        = 128
)

// Kind is the syslog destination.
var Kind = core.Kind{Name: "syslog", Parse: func(p *core.Parser) core.Config { return Parse(p) }}

// Config is the syslog sink's keys, parsed and checked.
type Config struct {
	f *formatter // the message layout, templates compiled

	network string // tcp or udp
	useTLS  bool
	addr    string // host:port
	host    string

	caFile             string
	serverName         string
	insecureSkipVerify bool

	dialTimeout, writeTimeout, ackTimeout, flushTimeout, keepalive time.Duration
}

// maxUDPPayload is the most an IPv4 UDP datagram carries: 65,535 - 8 (UDP) - 20 (IP).
const maxUDPPayload = 65507

// redactAddress hides the port of a host:port (with its scheme, if any).
func redactAddress(a string) string {
	if i := strings.LastIndexByte(a, ':'); i >= 0 && i < len(a)-1 && !strings.HasSuffix(a[:i+1], "//") {
		return a[:i+1] + "*****"
	}
	return a
}

// redactPort is an error whose text never shows the destination's port.
type redactPort struct {
	err  error
	port string // ":12345"
}

func (e redactPort) Error() string { return strings.ReplaceAll(e.err.Error(), e.port, ":*****") }
func (e redactPort) Unwrap() error { return e.err }

// Parse reads the syslog sink's keys; its errors are p's.
func Parse(p *core.Parser) *Config {
	var c Config
	// Set from the Secret in the shipped deployment: a problem with them leaves this output
	// not started, and the others running.
	p.FromEnv("address", "token")
	// Papertrail's port identifies the destination: whoever has it can write into the
	// account. It is never logged (the host is).
	address := p.Shown("address", "", redactAddress)
	mode, addr, err := splitAddress(address)
	if address == "" {
		p.Fail("address", "required: the syslog destination, e.g. logs3.papertrailapp.com:12345 (TLS), tcp://host:514 or udp://host:514")
	} else if err != nil {
		p.Fail("address", "%v", err)
	}
	c.addr = addr
	c.host, _, _ = net.SplitHostPort(addr)
	c.network, c.useTLS = "tcp", mode == "tls"
	if mode == "udp" {
		c.network = "udp"
	}
	c.caFile = p.String("ca_file", "")
	c.serverName = p.String("server_name", c.host)
	c.insecureSkipVerify = p.Bool("insecure_skip_verify", false)
	c.dialTimeout = p.Duration("dial_timeout", 10*time.Second, time.Millisecond, 10*time.Minute)
	c.writeTimeout = p.Duration("write_timeout", 30*time.Second, time.Millisecond, 10*time.Minute)
	c.ackTimeout = p.Duration("ack_timeout", 30*time.Second, time.Millisecond, 10*time.Minute)
	c.flushTimeout = p.Duration("flush_timeout", time.Minute, time.Millisecond, time.Hour)
	c.keepalive = p.Duration("keepalive", 30*time.Second, 0, time.Hour)

	f := &formatter{ex: accessor.NewExtractor()}
	defFraming, defMax := "lf", int64(100000)
	if mode == "udp" {
		defFraming, defMax = "none", 1024
	}
	switch p.Enum("framing", defFraming, "lf", "octet", "none") {
	case "octet":
		f.framing = framingOctet
	case "none":
		f.framing = framingNone
	}
	if (f.framing == framingNone) != (mode == "udp") {
		p.Fail("framing", "%q does not go with %s (UDP takes none; TCP and TLS take lf or octet)", f.framing.String(), mode)
	}
	f.maxSize = int(p.Size("max_size", defMax, 1024, 16<<20))
	// A datagram larger than UDP's payload limit fails with EMSGSIZE on every try.
	if mode == "udp" && f.maxSize > maxUDPPayload {
		p.Fail("max_size", "%d is more than a UDP datagram holds (%d)", f.maxSize, maxUDPPayload)
	}

	fac := p.String("facility", "user")
	facility, ok := facilities[strings.ToLower(fac)]
	if !ok {
		n, err := strconv.Atoi(fac)
		if err != nil || n < 0 || n > 23 {
			p.Fail("facility", "invalid value %q: want a facility name (user, daemon, local0...) or 0-23", fac)
		}
		facility = n
	}
	for sev := range f.pris {
		f.pris[sev] = "<" + strconv.Itoa(facility*8+sev) + ">1 "
	}

	tmpl := func(key, def string) *accessor.Template { return accessor.Key(p, f.ex, key, def) }
	f.hostname = tmpl("hostname", defaultHostname)
	f.appname = tmpl("appname", defaultAppname)
	f.procid = tmpl("procid", defaultProcid)
	f.msgid = tmpl("msgid", defaultMsgid)
	for _, t := range []*accessor.Template{f.hostname, f.appname, f.procid, f.msgid} {
		if t != nil {
			f.hdrSlots = t.Slots(f.hdrSlots)
		}
	}
	for _, slot := range f.hdrSlots {
		f.hdrInKube = append(f.hdrInKube, f.ex.InKube(slot))
	}

	// SolarWinds-hosted Papertrail (and Loggly) take the ingestion token as an SD-ID of its
	// own, <token>@41058: 42 bytes for a UUID, past RFC 5424's 32, which is relaxed for that
	// form alone. A credential: never logged, never in an error.
	if token := p.Secret("token", ""); token != "" {
		if len(token) > maxToken || !sdNameChars(token) {
			p.Fail("token", "must be printable ASCII without '=', ' ', ']' or '\"', at most %d bytes (the value is not shown)", maxToken)
		}
		f.tokenSD = []byte("[" + token + "@" + tokenEnterprise + "]")
	}
	f.sdID = p.String("sd_id", defaultSDID)
	if !validSDName(f.sdID) {
		p.Fail("sd_id", "invalid SD-ID %q: printable ASCII without '=', ' ', ']' or '\"', at most 32 bytes", f.sdID)
	}
	for _, item := range strings.Fields(p.String("sd_params", "")) {
		name, src, ok := strings.Cut(item, "=")
		if !ok || !validSDName(name) {
			p.Fail("sd_params", "invalid item %q: want name=template, the name printable ASCII without '=', ' ', ']' or '\"'", item)
			continue
		}
		t, err := accessor.Compile(src, f.ex, p.LookupEnv)
		if err != nil {
			p.Fail("sd_params", "%v", err)
			continue
		}
		param := sdParam{name: name, tmpl: t, slot: -1}
		if slot, ok := t.Field(); ok {
			param.slot = slot
		}
		f.sd = append(f.sd, param)
	}

	f.messageSlot = f.ex.Add([]string{p.String("message_key", "log")})
	f.streamSlot = f.ex.Add([]string{"stream"})
	for _, k := range strings.Split(p.String("severity_key", "severity,level"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			f.severitySlots = append(f.severitySlots, f.ex.Add([]string{k}))
		}
	}
	sevKey := func(key, def string) int {
		v := p.String(key, def)
		n, ok := severityByName(v)
		if !ok {
			p.Fail(key, "invalid value %q: want a severity 0-7 or a name (err, warning, info...)", v)
		}
		return n
	}
	f.stdoutSev = sevKey("severity_stdout", "info")
	f.stderrSev = sevKey("severity_stderr", "err")
	f.fallbackSev = sevKey("severity_default", "info")
	c.f = f
	return &c
}

func (f framing) String() string {
	return [...]string{"lf", "octet", "none"}[f]
}

// splitAddress reads "host:port" (TLS, as Papertrail gives it) or "tls://", "tcp://",
// "udp://" with host:port.
func splitAddress(a string) (mode, hostport string, err error) {
	mode, hostport = "tls", a
	if scheme, rest, ok := strings.Cut(a, "://"); ok {
		mode, hostport = strings.ToLower(scheme), rest
	}
	if mode != "tls" && mode != "tcp" && mode != "udp" {
		return "", "", fmt.Errorf("invalid value %q: scheme must be tls, tcp or udp", redactAddress(a))
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return "", "", fmt.Errorf("invalid value %q: want host:port, e.g. logs3.papertrailapp.com:12345", redactAddress(a))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("invalid value %q: bad port", redactAddress(a))
	}
	return mode, hostport, nil
}

func validSDName(s string) bool { return len(s) <= maxSDName && sdNameChars(s) }

// sdNameChars tells whether s is made of what an SD-NAME may hold (RFC 5424 section 6).
func sdNameChars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == '=' || c == ']' || c == '"' || c == ' ' {
			return false
		}
	}
	return true
}

// Destination names where the output sends, for its ledger: the same across restarts.
func (c *Config) Destination() string { return c.network + "://" + c.addr }
