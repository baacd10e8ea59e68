package main

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"time"
)

// spdxDocument is the subset of SPDX 2.3 JSON an SBOM of Go modules needs.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
	Comment  string   `json:"comment,omitempty"`
}

type spdxPackage struct {
	Name             string            `json:"name"`
	SPDXID           string            `json:"SPDXID"`
	VersionInfo      string            `json:"versionInfo"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// spdxFromBinary reads the Go build info of the binary at bin and describes its main module and every module
// linked into it.
func spdxFromBinary(name, version, bin string, created time.Time) ([]byte, error) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read the build info of %s: %w", bin, err)
	}
	return spdxFromBuildInfo(name, version, info, created)
}

func spdxFromBuildInfo(name, version string, info *buildinfo.BuildInfo, created time.Time) ([]byte, error) {
	doc := spdxDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              name + "-" + version,
		DocumentNamespace: fmt.Sprintf("https://github.com/straddle-io/straddle/spdx/%s-%s", name, version),
		CreationInfo: spdxCreationInfo{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: straddle-hack-images"},
			Comment:  "Go modules from the build info of the image's binary, built with " + info.GoVersion,
		},
	}
	mainVersion := info.Main.Version
	if mainVersion == "" || mainVersion == "(devel)" {
		mainVersion = version
	}
	doc.Packages = append(doc.Packages, pkg("SPDXRef-Package-main", info.Main.Path, mainVersion))
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Package-main"})
	for i, dep := range info.Deps {
		m := dep
		if dep.Replace != nil {
			// The replacement is the code that was linked in.
			m = dep.Replace
		}
		id := fmt.Sprintf("SPDXRef-Package-%d", i+1)
		doc.Packages = append(doc.Packages, pkg(id, m.Path, m.Version))
		doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-Package-main", "DEPENDS_ON", id})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// pkg describes one module; go.sum's h1: hash is of the module's file tree, not of an archive SPDX could
// check, so the purl alone names it.
func pkg(id, path, version string) spdxPackage {
	p := spdxPackage{
		Name: path, SPDXID: id, VersionInfo: version, DownloadLocation: "NOASSERTION",
		ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + path + "@" + version}},
	}
	return p
}
