package main

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart whose default images these are.
const chartDir = "charts/livemigrate"

// chartImageDefaults returns the image name prefix and tag the chart's
// default values give every component's image: values.yaml's
// image.registry and v<appVersion> of Chart.yaml (image.tag empty). The
// images are built with them unless --repository or --tag say otherwise.
func chartImageDefaults(repoDir string) (repository, tag string, err error) {
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := readYAML(filepath.Join(repoDir, chartDir, "Chart.yaml"), &meta); err != nil {
		return "", "", err
	}
	var values struct {
		Image struct {
			Registry string `json:"registry"`
			Tag      string `json:"tag"`
		} `json:"image"`
	}
	if err := readYAML(filepath.Join(repoDir, chartDir, "values.yaml"), &values); err != nil {
		return "", "", err
	}
	if meta.AppVersion == "" || values.Image.Registry == "" {
		return "", "", fmt.Errorf("%s: Chart.yaml has no appVersion or values.yaml no image.registry", chartDir)
	}
	tag = values.Image.Tag
	if tag == "" {
		tag = "v" + meta.AppVersion
	}
	return values.Image.Registry, tag, nil
}

func readYAML(path string, into any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the chart's image defaults: %w", err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
