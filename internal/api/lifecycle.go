package api

import (
	"net/http"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// updateBody is PATCH /api/v1/objects/{code}: each field present is changed.
// tags replaces every tag; tags_merge sets some and tags_remove drops some
// (not together with tags). path "" takes the object out of the hierarchy,
// edge "" from its edge, network "" clears its network profile; model is
// {"id", "version"} (version "latest" = the newest not deprecated).
type updateBody struct {
	Path       *string            `json:"path"`
	Tags       map[string]string  `json:"tags"`
	TagsMerge  map[string]string  `json:"tags_merge"`
	TagsRemove []string           `json:"tags_remove"`
	Model      *registry.ModelRef `json:"model"`
	Edge       *string            `json:"edge"`
	Network    *string            `json:"network"`
}

func (s *server) updateObject(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b updateBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	u := registry.UpdateRequest{Tags: b.Tags, TagsMerge: b.TagsMerge, TagsRemove: b.TagsRemove, Model: b.Model, Edge: b.Edge, Network: b.Network}
	if b.Path != nil {
		path := []string{}
		if *b.Path != "" {
			if path, err = code.ParsePath(*b.Path); err != nil {
				return badRequest("path", "%v", err)
			}
		}
		u.Path = &path
	}
	o, err = s.Registry.Update(r.Context(), p.Name, o.Code, u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

type decommissionBody struct {
	Reason string `json:"reason"`
	// ReleaseCode: nil takes the deployment's default
	// (identity.decommission_release_codes).
	ReleaseCode *bool `json:"release_code"`
}

func (s *server) decommission(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b decommissionBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &b); err != nil {
			return err
		}
	}
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	release := s.DecommissionReleaseCodes
	if b.ReleaseCode != nil {
		release = *b.ReleaseCode
	}
	o, err = s.Registry.Decommission(r.Context(), p.Name, o.Code, b.Reason, release)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

// deleteBody selects a tenant's test objects: tenant and at least one tag,
// optionally under, kind and edge, as object list takes them.
type deleteBody struct {
	Tenant string            `json:"tenant"`
	Tags   map[string]string `json:"tags"`
	Under  string            `json:"under"`
	Kind   string            `json:"kind"`
	Edge   string            `json:"edge"`
	Reason string            `json:"reason"`
	DryRun bool              `json:"dry_run"`
}

func (s *server) deleteObjects(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b deleteBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.Tenant == "" {
		return badRequest("tenant", "name the tenant whose objects are deleted")
	}
	if err := p.Allows(auth.Operator, b.Tenant); err != nil {
		return err
	}
	f := registry.ListFilter{Tenant: b.Tenant, Tags: b.Tags, Kind: b.Kind, Edge: b.Edge}
	if b.Under != "" {
		var err error
		if f.Under, err = code.ParsePath(b.Under); err != nil {
			return badRequest("under", "%v", err)
		}
	}
	res, err := s.Registry.Delete(r.Context(), p.Name, registry.DeleteRequest{Filter: f, Reason: b.Reason, DryRun: b.DryRun})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) deprecateModel(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b reasonBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	id, version, err := s.modelFor(r, p)
	if err != nil {
		return err
	}
	mi, err := s.Registry.DeprecateModel(r.Context(), p.Name, id, version, b.Reason, allow(p, auth.Operator))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mi)
	return nil
}
