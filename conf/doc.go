// Package conf holds the deployment: Fluent Bit's configuration, the Kubernetes manifests
// (kustomize) and, beside it, the Dockerfile. Its tests hold them to each other and to the
// plugin.
package conf
