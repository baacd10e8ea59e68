package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller"
)

// scheduleCreateOptions are the flags of `straddle schedule create`.
type scheduleCreateOptions struct {
	*backupFlags
	backupSpecFlags
	schedule  string
	retention v1.RetentionPolicy
	paused    bool
}

func newScheduleCreateCmd(f *backupFlags) *cobra.Command {
	o := &scheduleCreateOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "create NAME --schedule EXPR",
		Short: "Create a Schedule that backs up the selected pods' volumes at each tick of a cron expression",
		Example: `  straddle schedule create nightly --schedule "0 3 * * *" --include-namespaces shop --keep-daily 7 --keep-weekly 4
  straddle schedule create often --schedule "@every 15m" --selector app=db --keep-last 8`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.build(args[0])
			if err != nil {
				return err
			}
			cl, err := o.client()
			if err != nil {
				return err
			}
			return createSchedule(cmd.Context(), cl, s, time.Now(), cmd.OutOrStdout())
		},
	}
	o.register(cmd.Flags())
	return cmd
}

func (o *scheduleCreateOptions) register(fl *pflag.FlagSet) {
	fl.StringVar(&o.schedule, "schedule", "", `when to back up, in UTC: five cron fields ("0 3 * * *"), a descriptor (@daily, @hourly) or "@every 6h"`)
	o.backupSpecFlags.register(fl)
	fl.IntVar(&o.retention.KeepLast, "keep-last", 0, "keep the N newest backups (0: rule off)")
	fl.IntVar(&o.retention.KeepHourly, "keep-hourly", 0, "keep the newest backup of each of the last N hours that have one")
	fl.IntVar(&o.retention.KeepDaily, "keep-daily", 0, "keep the newest backup of each of the last N days that have one")
	fl.IntVar(&o.retention.KeepWeekly, "keep-weekly", 0, "keep the newest backup of each of the last N ISO weeks that have one")
	fl.IntVar(&o.retention.KeepMonthly, "keep-monthly", 0, "keep the newest backup of each of the last N months that have one")
	fl.BoolVar(&o.paused, "paused", false, "create the schedule paused: no backups until straddle schedule unpause")
}

// build checks the flags and makes the Schedule, with one sentence for the first thing wrong, before any
// cluster is contacted.
func (o *scheduleCreateOptions) build(name string) (*v1.Schedule, error) {
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(name) > controller.MaxScheduleNameLength {
		return nil, fmt.Errorf("schedule name %q is not valid: use at most %d lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (its backups are named NAME-YYYYMMDDhhmmss)", name, controller.MaxScheduleNameLength)
	}
	if o.schedule == "" {
		return nil, errors.New(`--schedule is required: five cron fields such as "0 3 * * *", a descriptor such as @daily, or "@every 6h"`)
	}
	if _, err := controller.ParseSchedule(o.schedule); err != nil {
		return nil, fmt.Errorf("--schedule: %w", err)
	}
	r := o.retention
	for _, k := range []struct {
		flag string
		n    int
	}{{"--keep-last", r.KeepLast}, {"--keep-hourly", r.KeepHourly}, {"--keep-daily", r.KeepDaily}, {"--keep-weekly", r.KeepWeekly}, {"--keep-monthly", r.KeepMonthly}} {
		if k.n < 0 {
			return nil, fmt.Errorf("%s %d: a count cannot be negative", k.flag, k.n)
		}
	}
	spec, err := o.spec()
	if err != nil {
		return nil, err
	}
	s := &v1.Schedule{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace}, Spec: v1.ScheduleSpec{Schedule: o.schedule, Template: spec, Paused: o.paused}}
	if r != (v1.RetentionPolicy{}) {
		s.Spec.Retention = &r
	}
	return s, nil
}

// createSchedule creates s and says when it first runs.
func createSchedule(ctx context.Context, cl client.Client, s *v1.Schedule, now time.Time, out io.Writer) error {
	if err := checkStorageLocation(ctx, cl, s.Namespace, s.Spec.Template.StorageLocation); err != nil {
		return err
	}
	switch err := cl.Create(ctx, s); {
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("schedule %q already exists in namespace %s; pick another name, or delete it first", s.Name, s.Namespace)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("create schedule %q: namespace %s not found; is Straddle installed there (straddle install -n %s)?", s.Name, s.Namespace, s.Namespace)
	case err != nil:
		return fmt.Errorf("create schedule %s/%s: %w", s.Namespace, s.Name, installHint(err))
	}
	when := "paused: no backups until straddle schedule unpause " + s.Name
	if !s.Spec.Paused {
		if sched, err := controller.ParseSchedule(s.Spec.Schedule); err == nil {
			when = "first backup at about " + sched.Next(now.UTC()).Format("2006-01-02 15:04:05 MST")
		}
	}
	_, err := fmt.Fprintf(out, "Schedule %q created (%s). See: straddle schedule describe %s\n", s.Name, when, s.Name)
	return err
}
