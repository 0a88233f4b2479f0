package stackdriver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"
	logging "cloud.google.com/go/logging/apiv2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
)

// Kind is the Cloud Logging destination.
var Kind = core.Kind{Name: "stackdriver", Parse: func(p *core.Parser) core.Config { return Parse(p) }}

// Config is the Cloud Logging sink's keys, parsed and checked. What they leave out (project,
// cluster, location) Build asks the metadata server for.
type Config struct {
	project, cluster, location string
	credsFile, endpoint        string
	plaintext                  bool
	fallback                   string
	timeout                    time.Duration
	retention                  time.Duration
	ex                         *accessor.Extractor // the fields logName and nodeName read
	logName, nodeName          *accessor.Template
}

// Parse reads the Cloud Logging sink's keys; its errors are p's.
func Parse(p *core.Parser) *Config {
	p.FromEnv("project_id", "cluster_name", "cluster_location", "credentials_file", "endpoint")
	c := &Config{
		project:   p.String("project_id", ""),
		cluster:   p.String("cluster_name", ""),
		location:  p.String("cluster_location", ""),
		credsFile: p.String("credentials_file", ""),
		endpoint:  p.String("endpoint", ""),
		plaintext: p.Bool("endpoint_plaintext", false),
		fallback:  p.Enum("fallback_resource", "k8s_node", "k8s_node", "generic_node", "global"),
		timeout:   p.Duration("timeout", 30*time.Second, time.Second, 10*time.Minute),
		// The log bucket's retention: an agent with logging.logWriter cannot read it.
		retention: p.Duration("retention", 30*24*time.Hour, 2*time.Hour, 3650*24*time.Hour),
		ex:        accessor.NewExtractor(),
	}
	c.logName = accessor.Key(p, c.ex, "log_name", "$stream||$TAG")
	c.nodeName = accessor.Key(p, c.ex, "node_name", "${NODE_NAME}||$kubernetes['host']")
	if c.plaintext && c.endpoint == "" {
		p.Fail("endpoint_plaintext", "needs an endpoint")
	}
	return c
}

// Build starts the Cloud Logging client, asking the GCE metadata server for the project,
// cluster and location the keys leave out.
func (c *Config) Build(env core.Env) (core.Sink, error) {
	project, cluster, location, credsFile, endpoint := c.project, c.cluster, c.location, c.credsFile, c.endpoint
	if project == "" && credsFile != "" {
		project = projectFromKeyFile(credsFile)
	}
	md := metadata.NewClient(&http.Client{Timeout: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mdErr error
	fromMetadata := func(key, what string, get func(context.Context) (string, error)) string {
		v, err := get(ctx)
		if (err != nil || v == "") && mdErr == nil {
			mdErr = core.KeyError(key, "not set, and the GCE metadata server gave no %s (%v): set it in the configuration", what, err)
		}
		return strings.TrimSpace(v)
	}
	if project == "" {
		project = fromMetadata("project_id", "project ID", md.ProjectIDWithContext)
	}
	if cluster == "" {
		cluster = fromMetadata("cluster_name", "instance/attributes/cluster-name", func(c context.Context) (string, error) {
			return md.InstanceAttributeValueWithContext(c, "cluster-name")
		})
	}
	if location == "" {
		location = fromMetadata("cluster_location", "instance/attributes/cluster-location", func(c context.Context) (string, error) {
			return md.InstanceAttributeValueWithContext(c, "cluster-location")
		})
	}
	if mdErr != nil {
		return nil, mdErr
	}

	// A request is a chunk, about 2 MB: written in large pieces rather than gRPC's default
	// 32 KiB, which took a write system call every two HTTP/2 frames.
	opts := []option.ClientOption{option.WithGRPCDialOption(grpc.WithWriteBufferSize(1 << 20))}
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint))
	}
	if c.plaintext {
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	} else if credsFile != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, credsFile))
	}
	client, err := logging.NewClient(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud logging client: %w", err)
	}
	s := &sink{client: client, m: newMapper(project, location, cluster, c.fallback, c.ex), log: env.Log, timeout: c.timeout}
	s.refused.Interval = 10 * time.Second
	s.met = env.Metrics
	s.shaped.Interval = 10 * time.Second
	s.m.logName, s.m.nodeName, s.m.retention = c.logName, c.nodeName, c.retention
	s.m.logSlots = c.logName.Slots(nil)
	s.m.nodeFromKube = true
	for _, slot := range c.nodeName.Slots(nil) {
		s.m.nodeFromKube = s.m.nodeFromKube && c.ex.InKube(slot)
	}
	s.scratch.New = func() any { return s.m.newScratch() }
	env.Log.Infof("Cloud Logging: project %s, cluster %s in %s", project, cluster, location)
	return s, nil
}

func projectFromKeyFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var k struct {
		ProjectID string `json:"project_id"`
	}
	_ = json.Unmarshal(b, &k)
	return k.ProjectID
}

// Destination names where the output sends, for its ledger: the same across restarts (the
// project from the metadata server when the key leaves it out, one per node).
func (c *Config) Destination() string { return c.project + "@" + c.endpoint }
