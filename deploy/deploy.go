// Package deploy embeds the install manifests (the Kustomize base and the CRDs), so the straddle binary can
// render and apply them with no network and no checkout.
package deploy

import "embed"

// Manifests holds base/ and crds/.
//
//go:embed base/*.yaml crds/*.yaml
var Manifests embed.FS
