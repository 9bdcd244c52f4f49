package cli

// Network profiles and the bytes devices exchange with the hub:
// `wanwu ctl object bytes`, `wanwu ctl network list|usage`.

import (
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// byteText writes a byte count with a binary unit.
func byteText(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// budgetText is a budget and the share of it used, "-" for none.
func budgetText(budget int64, percent float64) (string, string) {
	if budget <= 0 {
		return "-", "-"
	}
	return byteText(budget), strconv.FormatFloat(percent, 'f', 1, 64) + "%"
}

func costText(cost float64, currency string) string {
	if currency == "" {
		return "-"
	}
	return strconv.FormatFloat(cost, 'f', 4, 64) + " " + currency
}

func ctlObjectBytes(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	days := fs.Int("days", 7, "how many UTC days, today first")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 1, "CODE"); err != nil {
			return err
		}
		var out struct {
			Network string    `json:"network"`
			AsOf    time.Time `json:"as_of"`
			Days    []struct {
				Day          string     `json:"day"`
				Network      string     `json:"network"`
				Up           int64      `json:"up"`
				Down         int64      `json:"down"`
				Total        int64      `json:"total"`
				Budget       int64      `json:"budget"`
				PercentUsed  float64    `json:"percent_used"`
				Cost         float64    `json:"cost"`
				Currency     string     `json:"currency"`
				OverBudgetAt *time.Time `json:"over_budget_at"`
			} `json:"days"`
		}
		path := "/api/v1/objects/" + url.PathEscape(args[0]) + "/bytes?days=" + strconv.Itoa(*days)
		if done, err := getData(e, c, path, *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Days))
		for _, d := range out.Days {
			budget, used := budgetText(d.Budget, d.PercentUsed)
			over := ""
			if d.OverBudgetAt != nil {
				over = "over since " + timeText(*d.OverBudgetAt)
			}
			network := d.Network
			if network == "" {
				network = "-"
			}
			rows = append(rows, []string{d.Day, network, byteText(d.Up), byteText(d.Down), byteText(d.Total), budget, used, costText(d.Cost, d.Currency), over})
		}
		if err := table(e.stdout, []string{"DAY (UTC)", "NETWORK", "UP", "DOWN", "TOTAL", "BUDGET", "USED", "COST", ""}, rows); err != nil {
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "as of %s (the hub writes byte counts every networks.flush_every)\n", timeText(out.AsOf))
		return err
	}
}

func ctlNetworkList(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var out struct {
			Networks []struct {
				Name        string  `json:"name"`
				Title       string  `json:"title"`
				Protocol    string  `json:"protocol"`
				PricePerMB  float64 `json:"price_per_mb"`
				DailyBudget int64   `json:"daily_budget"`
				Sleep       struct {
					PSM            bool          `json:"psm"`
					ActiveTimer    time.Duration `json:"active_timer"`
					PeriodicUpdate time.Duration `json:"periodic_update"`
					EDRXCycle      time.Duration `json:"edrx_cycle"`
				} `json:"sleep"`
			} `json:"networks"`
		}
		if done, err := getData(e, c, "/api/v1/networks", *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Networks))
		for _, n := range out.Networks {
			budget, _ := budgetText(n.DailyBudget, 0)
			sleep := "always reachable"
			switch {
			case n.Sleep.PSM:
				sleep = fmt.Sprintf("PSM: awake %s after an uplink, asleep up to %s", n.Sleep.ActiveTimer, n.Sleep.PeriodicUpdate)
			case n.Sleep.EDRXCycle > 0:
				sleep = fmt.Sprintf("eDRX: listens every %s", n.Sleep.EDRXCycle)
			}
			rows = append(rows, []string{n.Name, n.Title, n.Protocol, budget, strconv.FormatFloat(n.PricePerMB, 'f', -1, 64), sleep})
		}
		return table(e.stdout, []string{"NETWORK", "TITLE", "PROTOCOL", "BUDGET/DAY", "PRICE/MB", "SLEEP"}, rows)
	}
}

func ctlNetworkUsage(fs *flag.FlagSet) func(e *env, c *ctlConn, args []string) error {
	tenant := fs.String("tenant", "", "one tenant's devices")
	asJSON := fs.Bool("json", false, "print the hub's JSON answer")
	return func(e *env, c *ctlConn, args []string) error {
		if err := needArgs(args, 0, "no arguments (filters are flags)"); err != nil {
			return err
		}
		var out struct {
			Day      string    `json:"day"`
			AsOf     time.Time `json:"as_of"`
			Networks []struct {
				Network    string  `json:"network"`
				Objects    int     `json:"objects"`
				Devices    int     `json:"devices"`
				Up         int64   `json:"up"`
				Down       int64   `json:"down"`
				Total      int64   `json:"total"`
				OverBudget int     `json:"over_budget"`
				Budget     int64   `json:"budget"`
				Cost       float64 `json:"cost"`
				Currency   string  `json:"currency"`
			} `json:"networks"`
		}
		q := addFilters(url.Values{}, map[string]string{"tenant": *tenant})
		if done, err := getData(e, c, "/api/v1/networks/usage?"+q.Encode(), *asJSON, &out); done || err != nil {
			return err
		}
		rows := make([][]string, 0, len(out.Networks))
		for _, n := range out.Networks {
			budget, _ := budgetText(n.Budget, 0)
			rows = append(rows, []string{n.Network, strconv.Itoa(n.Objects), strconv.Itoa(n.Devices), byteText(n.Up), byteText(n.Down),
				byteText(n.Total), budget, strconv.Itoa(n.OverBudget), costText(n.Cost, n.Currency)})
		}
		if _, err := fmt.Fprintf(e.stdout, "%s (UTC), as of %s\n", out.Day, timeText(out.AsOf)); err != nil {
			return err
		}
		return table(e.stdout, []string{"NETWORK", "OBJECTS", "ACTIVE", "UP", "DOWN", "TOTAL", "BUDGET/DEVICE", "OVER BUDGET", "COST"}, rows)
	}
}
