package api

import (
	"net/http"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/webhook"
)

// webhookRoutes serve the webhooks: receivers of device events, command
// events and presence changes.
func (s *server) webhookRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/webhooks", s.authed(auth.Operator, s.createWebhook))
	mux.HandleFunc("GET /api/v1/webhooks", s.authed(auth.Viewer, s.listWebhooks))
	mux.HandleFunc("GET /api/v1/webhooks/{id}", s.authed(auth.Viewer, s.getWebhook))
	mux.HandleFunc("DELETE /api/v1/webhooks/{id}", s.authed(auth.Operator, s.deleteWebhook))
	mux.HandleFunc("GET /api/v1/webhooks/{id}/deliveries", s.authed(auth.Viewer, s.webhookDeliveries))
	mux.HandleFunc("POST /api/v1/webhooks/{id}/retry", s.authed(auth.Operator, s.retryWebhook))
}

func (s *server) createWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b struct {
		Tenant      string   `json:"tenant"`
		URL         string   `json:"url"`
		Types       []string `json:"types"`
		Description string   `json:"description"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.Tenant == "" {
		b.Tenant = p.Tenant
	}
	if b.Tenant == "" {
		return badRequest("tenant", "whose events the webhook receives is required")
	}
	if err := p.Allows(auth.Operator, b.Tenant); err != nil {
		return err
	}
	if _, err := s.Registry.Tenant(r.Context(), b.Tenant); err != nil {
		return err
	}
	hook, err := s.Webhooks.Create(r.Context(), p.Name, webhook.Webhook{Tenant: b.Tenant, URL: b.URL, Types: b.Types, Description: b.Description})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"webhook": hook})
	return nil
}

// visibleWebhook returns the webhook if p may see its tenant; one another
// tenant owns is "not found", as it is for objects.
func (s *server) visibleWebhook(p auth.Principal, role auth.Role, id string) (webhook.Webhook, error) {
	hook, err := s.Webhooks.Get(id)
	if err != nil {
		return webhook.Webhook{}, err
	}
	if p.Tenant != "" && p.Tenant != hook.Tenant {
		return webhook.Webhook{}, webhook.ErrNotFound
	}
	return hook, p.Allows(role, hook.Tenant)
}

func (s *server) listWebhooks(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": s.Webhooks.List(tenant)})
	return nil
}

func (s *server) getWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	hook, err := s.visibleWebhook(p, auth.Viewer, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhook": hook})
	return nil
}

func (s *server) deleteWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	hook, err := s.visibleWebhook(p, auth.Operator, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.Webhooks.Delete(r.Context(), p.Name, hook.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// webhookDeliveries lists a webhook's outbox: ?status=failed (the dead
// letters), pending, or both.
func (s *server) webhookDeliveries(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	hook, err := s.visibleWebhook(p, auth.Viewer, r.PathValue("id"))
	if err != nil {
		return err
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", "failed", "pending":
	default:
		return badRequest("status", "want failed or pending, got %q", status)
	}
	n, err := queryUint(r, "limit", 100)
	if err != nil {
		return err
	}
	ds, err := s.Webhooks.Deliveries(r.Context(), hook.ID, status, int(min(n, 1000)))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
	return nil
}

// retryWebhook puts the webhook's failed deliveries back in its outbox.
func (s *server) retryWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	hook, err := s.visibleWebhook(p, auth.Operator, r.PathValue("id"))
	if err != nil {
		return err
	}
	n, err := s.Webhooks.Retry(r.Context(), hook.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"requeued": n})
	return nil
}
