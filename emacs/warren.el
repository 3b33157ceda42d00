;;; warren.el --- Workloads, logs, events, a REPL and org dashboards for warren  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors

;; Author: The warren authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (transient "0.3.7"))
;; Keywords: tools, processes, unix
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; An Emacs front end to warren, the declarative control plane for containers, jails and
;; microVMs.  Everything goes through the `warren' command-line program, so the package
;; talks to whatever daemon the CLI does: the local one, a remote one named by a context
;; (`warren-context', the CLI's `--context'), and, when `default-directory' is a TRAMP
;; directory, the CLI of that remote host (processes run with `process-file' and
;; `make-process' with `:file-handler').
;;
;; Commands:
;;   `warren-list'      a table of workloads with marks and actions (`?' for a menu),
;;                      refreshed from the daemon's event stream while it is visible
;;   `warren-logs'      a workload's output, following new lines
;;   `warren-events'    the live event stream
;;   `warren-describe'  a workload's status, spec, snapshots and recent events
;;   `warren-exec'      a shell inside a workload (vterm, term or comint)
;;   `warren-info'      what the daemon's host is and how full it is
;;   `warren-repl'      the daemon's Scheme REPL in comint
;; Org dynamic blocks `warren-status' and `warren-snapshots' (see warren-org.el) make
;; fleet dashboards, updated with C-c C-x C-u.
;;
;; This file holds what the others share: options, running the CLI and reading its JSON,
;; contexts, and formatting of workload fields.

;;; Code:

(require 'cl-lib)
(require 'seq)
(require 'subr-x)

(defgroup warren nil
  "Manage warren workloads."
  :group 'tools
  :prefix "warren-")

(defcustom warren-executable (or (getenv "WARREN_EXECUTABLE") "warren")
  "The warren command-line program.
A name is looked up on the exec path of the host `default-directory'
is on (the remote host's, for a TRAMP directory).  The environment
variable WARREN_EXECUTABLE gives the default."
  :type 'string)

(defcustom warren-global-arguments nil
  "Arguments given to every warren command before the command name.
For example (\"--state-dir\" \"/srv/warren\")."
  :type '(repeat string))

(defcustom warren-context nil
  "The CLI context to talk to (`--context'); nil for the local daemon.
Buffers made by the warren commands keep the context they were made
for in a buffer-local value."
  :type '(choice (const :tag "Local daemon" nil) string))

(define-error 'warren-error "warren command failed")

(defun warren--arguments (args &optional context)
  "The full argument list of the CLI for ARGS, talking to CONTEXT.
CONTEXT defaults to `warren-context'."
  (let ((ctx (or context warren-context)))
    (append warren-global-arguments
            (and ctx (not (string-empty-p ctx)) (list "--context" ctx))
            args)))

(defun warren--command-line (args &optional context)
  "ARGS for CONTEXT as one shell-quoted command line."
  (mapconcat #'shell-quote-argument
             (cons warren-executable (warren--arguments args context))
             " "))

(defun warren-run (args &optional context)
  "Run warren with ARGS (a list of strings) against CONTEXT; return its output.
Runs on the host of `default-directory'.  Signals `warren-error' with
the CLI's error message when it fails."
  (let ((errfile (make-temp-file "warren-stderr")))
    (unwind-protect
        (with-temp-buffer
          (let* ((status (apply #'process-file warren-executable nil
                                (list t errfile) nil
                                (warren--arguments args context)))
                 (out (buffer-string)))
            (if (eql status 0)
                out
              (let ((err (string-trim
                          (with-temp-buffer
                            (insert-file-contents errfile)
                            (buffer-string)))))
                (signal 'warren-error
                        (list (mapconcat #'identity (cons "warren" args) " ")
                              (if (string-empty-p err)
                                  (format "exit status %s" status)
                                (string-remove-prefix "error: " err))))))))
      (delete-file errfile))))

(defun warren-json-parse (string)
  "Parse the JSON text STRING.
Objects become alists, arrays lists, null and false nil."
  (json-parse-string string :object-type 'alist :array-type 'list
                     :null-object nil :false-object nil))

(defun warren-json (args &optional context)
  "Run warren with ARGS against CONTEXT and parse its JSON output."
  (warren-json-parse (warren-run args context)))

(defun warren-start (name buffer args &rest props)
  "Start warren with ARGS as process NAME writing to BUFFER; return the process.
PROPS are extra `make-process' properties (`:filter', `:sentinel',
`:stderr', `:connection-type', `:context').  The process runs on the
host of `default-directory'."
  (let ((context (plist-get props :context))
        (props (copy-sequence props)))
    (cl-remf props :context)
    (apply #'make-process
           :name name
           :buffer buffer
           :command (cons warren-executable (warren--arguments args context))
           :noquery t
           :file-handler t
           (append props
                   (unless (plist-member props :connection-type)
                     (list :connection-type 'pipe))))))

(defun warren-run-async (args callback &optional context)
  "Run warren with ARGS against CONTEXT without waiting.
CALLBACK is called with two arguments when it ends: whether it
succeeded and its output (stdout and stderr)."
  (let* ((buf (generate-new-buffer " *warren-command*"))
         (dir default-directory))
    (with-current-buffer buf (setq default-directory dir))
    (let ((default-directory dir))
      (warren-start "warren-command" buf args
                    :context context
                    :sentinel
                    (lambda (proc _event)
                      (unless (process-live-p proc)
                        (let ((ok (eql (process-exit-status proc) 0))
                              (out (with-current-buffer (process-buffer proc)
                                     (string-trim (buffer-string)))))
                          (kill-buffer (process-buffer proc))
                          (funcall callback ok out))))))))

(defun warren-contexts ()
  "The names of the CLI's remote contexts (`warren context list')."
  (let ((lines (cdr (split-string (warren-run '("context" "list")) "\n" t))))
    (mapcar (lambda (l) (car (split-string l))) lines)))

(defun warren-read-context (&optional prompt)
  "Read a context name with PROMPT; the empty string means the local daemon."
  (let ((c (completing-read (or prompt "Context (empty for the local daemon): ")
                            (ignore-errors (warren-contexts)) nil nil nil nil "")))
    (unless (string-empty-p c) c)))

(defun warren-workload-names (&optional context)
  "The names of the workloads of CONTEXT's daemon."
  (mapcar (lambda (s) (alist-get 'name s)) (warren-json '("list" "-o" "json") context)))

(defun warren-read-workload (&optional prompt context)
  "Read a workload name of CONTEXT's daemon with PROMPT.
The default is the workload at point in a list."
  (let ((here (and (fboundp 'tabulated-list-get-id)
                   (derived-mode-p 'tabulated-list-mode)
                   (tabulated-list-get-id))))
    (completing-read (format-prompt (or prompt "Workload") here)
                     (ignore-errors (warren-workload-names context))
                     nil nil nil nil here)))

(defun warren-workloads (&optional context with-spec cache)
  "The workloads of CONTEXT's daemon: the objects `warren list -o json' prints.
With WITH-SPEC each also carries its `spec' (from `warren get NAME'),
which the ports and domains come from.  CACHE, a hash table from name
to (GENERATION . SPEC), spares a `get' for each workload whose
generation has not moved; it is updated in place."
  (let ((statuses (warren-json '("list" "-o" "json") context))
        (seen nil))
    (if (not with-spec)
        statuses
      (prog1
          (mapcar
           (lambda (s)
             (let* ((name (alist-get 'name s))
                    (gen (alist-get 'generation s))
                    (hit (and cache (gethash name cache)))
                    (spec (if (and hit (equal (car hit) gen))
                              (cdr hit)
                            (alist-get 'spec
                                       (condition-case nil
                                           (warren-json (list "get" name "-o" "json") context)
                                         ;; Deleted between the list and the get.
                                         (warren-error nil))))))
               (push name seen)
               (when cache (puthash name (cons gen spec) cache))
               (cons (cons 'spec spec) s)))
           statuses)
        (when cache
          (maphash (lambda (k _) (unless (member k seen) (remhash k cache))) cache))))))

(defun warren-buffer-name (what &optional context)
  "The name of a buffer showing WHAT for CONTEXT's daemon.
The remote host of `default-directory', if any, is part of it."
  (let ((host (file-remote-p default-directory 'host)))
    (format "*warren %s%s%s*" what
            (if context (format " [%s]" context) "")
            (if host (format " @%s" host) ""))))

;;;; Formatting workload fields

(defun warren-age (ms &optional now-ms)
  "The time since MS (Unix milliseconds) as the CLI shows it (45s, 3m, 2h, 5d).
NOW-MS defaults to the current time."
  (let ((s (max 0 (/ (- (or now-ms (* 1000 (float-time))) ms) 1000))))
    (cond ((< s 60) (format "%ds" s))
          ((< s 3600) (format "%dm" (/ s 60)))
          ((< s 86400) (format "%dh" (/ s 3600)))
          (t (format "%dd" (/ s 86400))))))

(defun warren-field (detail column)
  "The text of COLUMN (a symbol) for a workload's DETAIL.
DETAIL is the object `warren get NAME -o json' prints: the status
fields plus `spec'.  Columns: name, kind, state, health, address,
ports, domains, uptime, restarts, pid, desired, source, generation."
  (let ((spec (alist-get 'spec detail)))
    (pcase column
      ('ports (mapconcat #'identity (alist-get 'ports spec) ","))
      ('domains (mapconcat #'identity (alist-get 'domains (alist-get 'route spec)) ","))
      ('uptime (let ((pid (alist-get 'pid detail))
                     (started (alist-get 'started_ms detail)))
                 (if (and pid started) (warren-age (truncate started)) "")))
      (_ (let ((v (alist-get column detail)))
           (cond ((null v) "")
                 ((stringp v) v)
                 (t (format "%s" v))))))))

(defun warren-state-face (state)
  "The face showing a workload STATE."
  (pcase state
    ("running" 'success)
    ((or "starting" "pending" "waiting") 'warning)
    ((or "exited" "refused") 'error)
    (_ 'shadow)))

;;;; Entry points defined in the other files

(autoload 'warren-list "warren-list" "List the workloads of a warren daemon." t)
(autoload 'warren-logs "warren-logs" "Show a workload's output." t)
(autoload 'warren-events "warren-logs" "Show the daemon's events as they happen." t)
(autoload 'warren-describe "warren-logs" "Describe a workload." t)
(autoload 'warren-exec "warren-logs" "Open a shell inside a workload." t)
(autoload 'warren-info "warren-logs" "Show the daemon host's information." t)
(autoload 'warren-repl "warren-repl" "Run the daemon's Scheme REPL." t)
(autoload 'org-dblock-write:warren-status "warren-org")
(autoload 'org-dblock-write:warren-snapshots "warren-org")
(autoload 'warren-org-insert-status-block "warren-org" nil t)
(autoload 'warren-org-insert-snapshots-block "warren-org" nil t)

;;;###autoload
(with-eval-after-load 'org
  (when (fboundp 'org-dynamic-block-define)
    (org-dynamic-block-define "warren-status" 'warren-org-insert-status-block)
    (org-dynamic-block-define "warren-snapshots" 'warren-org-insert-snapshots-block)))

(provide 'warren)
;;; warren.el ends here
