;;; warren-list.el --- The list of warren workloads  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors

;; Author: The warren authors
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `warren-list' shows a daemon's workloads in a `tabulated-list-mode' buffer: name, kind,
;; state, health, address, published ports, domains, uptime and restarts.  Workloads are
;; marked with `m' and acted on (the marked ones, or the one at point) with single keys;
;; `?' opens a transient menu of every action.
;;
;; The buffer follows the daemon's event stream (`warren events -f -o json', one long-lived
;; process) and refreshes, debounced, when an event arrives: no polling.  The stream runs
;; only while the buffer is shown in a window; hidden, the process is ended, and it is
;; started again (with a refresh) when the buffer is shown.

;;; Code:

(require 'warren)
(require 'warren-logs)
(require 'tabulated-list)
(require 'transient)

(defcustom warren-list-refresh-delay 0.3
  "Seconds to wait after an event before refreshing, so bursts refresh once."
  :type 'number
  :group 'warren)

(defcustom warren-list-reconnect-delay 3
  "Seconds to wait before following the event stream again after it ended."
  :type 'number
  :group 'warren)

(defvar-local warren-list--specs nil
  "Hash table of name to (GENERATION . SPEC), so specs are fetched once per change.")
(defvar-local warren-list--marked nil "Names of the marked workloads.")
(defvar-local warren-list--stream nil "The `warren events -f' process.")
(defvar-local warren-list--timer nil "The pending refresh or reconnect timer.")
(defvar-local warren-list--error nil "The last refresh's error message, if it failed.")
(defvar-local warren-list-refresh-count 0
  "How many times the buffer has been refreshed (tests watch it).")

(defvar warren-list--buffers nil "Live `warren-list-mode' buffers.")

(defvar warren-list-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map tabulated-list-mode-map)
    (define-key map (kbd "RET") #'warren-list-describe)
    (define-key map "d" #'warren-list-describe)
    (define-key map "m" #'warren-list-mark)
    (define-key map "u" #'warren-list-unmark)
    (define-key map "U" #'warren-list-unmark-all)
    (define-key map "s" #'warren-list-start)
    (define-key map "o" #'warren-list-stop)
    (define-key map "r" #'warren-list-restart)
    (define-key map "D" #'warren-list-delete)
    (define-key map "l" #'warren-list-logs)
    (define-key map "e" #'warren-list-exec)
    (define-key map "n" #'warren-list-snapshot)
    (define-key map "b" #'warren-list-rollback)
    (define-key map "E" #'warren-list-events)
    (define-key map "R" #'warren-list-repl)
    (define-key map "i" #'warren-list-info)
    (define-key map "?" #'warren-list-dispatch)
    map)
  "Keymap of `warren-list-mode'.")

(defun warren-list--number-sorter (column)
  "A sort predicate comparing COLUMN's numeric text."
  (lambda (a b)
    (< (string-to-number (aref (cadr a) column))
       (string-to-number (aref (cadr b) column)))))

(defun warren-list--uptime< (a b)
  "Whether entry A has been up for less time than entry B."
  (let ((ta (get-text-property 0 'warren-started (aref (cadr a) 7)))
        (tb (get-text-property 0 'warren-started (aref (cadr b) 7))))
    (> (or ta 0) (or tb 0))))

(define-derived-mode warren-list-mode tabulated-list-mode "Warren"
  "Major mode listing the workloads of a warren daemon.

Actions apply to the marked workloads, or else to the one at point.
The list refreshes itself from the daemon's event stream while it
is visible; \\[revert-buffer] refreshes it now, and \\[warren-list-dispatch] shows a menu.

\\{warren-list-mode-map}"
  (setq tabulated-list-format
        (vector '("Name" 18 t)
                '("Kind" 9 t)
                '("State" 9 t)
                '("Health" 9 t)
                '("Address" 15 t)
                '("Ports" 14 nil)
                '("Domains" 20 nil)
                (list "Uptime" 7 #'warren-list--uptime< :right-align t)
                (list "Restarts" 8 (warren-list--number-sorter 8) :right-align t)))
  (setq tabulated-list-padding 2)
  (setq tabulated-list-sort-key (cons "Name" nil))
  (setq warren-list--specs (make-hash-table :test 'equal))
  (setq-local revert-buffer-function #'warren-list--revert)
  (setq-local header-line-format '(:eval (warren-list--header)))
  (add-hook 'kill-buffer-hook #'warren-list--stop-stream nil t)
  (push (current-buffer) warren-list--buffers)
  (add-hook 'window-buffer-change-functions #'warren-list--sync-visibility)
  (tabulated-list-init-header))

(defun warren-list--header ()
  "The header line: the columns, preceded by the daemon shown and any error."
  (concat (propertize (format " %s%s "
                              (or warren-context "local")
                              (let ((h (file-remote-p default-directory 'host)))
                                (if h (concat "@" h) "")))
                      'face 'mode-line-emphasis)
          (if warren-list--error
              (propertize (concat " " warren-list--error) 'face 'error)
            "")
          (if (process-live-p warren-list--stream) "" (propertize " (not following)" 'face 'shadow))))

(defun warren-list--entry (w)
  "The `tabulated-list-entries' entry of workload W."
  (let* ((state (warren-field w 'state))
         (health (warren-field w 'health))
         (uptime (warren-field w 'uptime)))
    (list (alist-get 'name w)
          (vector (warren-field w 'name)
                  (warren-field w 'kind)
                  (propertize state 'face (warren-state-face state))
                  (propertize health 'face (if (equal health "unhealthy") 'error 'default))
                  (warren-field w 'address)
                  (warren-field w 'ports)
                  (warren-field w 'domains)
                  (propertize uptime 'warren-started
                              (and (alist-get 'pid w) (alist-get 'started_ms w)))
                  (warren-field w 'restarts)))))

(defun warren-list--revert (&rest _)
  "Fetch the workloads again and redraw, keeping marks and point."
  (condition-case err
      (let ((ws (warren-workloads warren-context t warren-list--specs)))
        (setq warren-list--error nil)
        (setq tabulated-list-entries (mapcar #'warren-list--entry ws))
        (setq warren-list--marked
              (seq-filter (lambda (n) (assoc n tabulated-list-entries)) warren-list--marked)))
    (warren-error
     (setq warren-list--error (format "%s" (nth 2 err)))
     (message "warren: %s" warren-list--error)))
  (cl-incf warren-list-refresh-count)
  (tabulated-list-print t)
  (warren-list--redraw-marks))

(defun warren-list--redraw-marks ()
  "Show the marks of `warren-list--marked'."
  (save-excursion
    (goto-char (point-min))
    (while (not (eobp))
      (when (member (tabulated-list-get-id) warren-list--marked)
        (tabulated-list-put-tag "*"))
      (forward-line 1))))

;;;; The event stream

(defun warren-list--schedule (buf delay fn)
  "Run FN in BUF after DELAY seconds unless something is pending there.
When TRAMP is busy with another command for the same host (a timer
runs while a command waits), FN is tried again later."
  (with-current-buffer buf
    (unless (timerp warren-list--timer)
      (setq warren-list--timer
            (run-at-time delay nil
                         (lambda ()
                           (when (buffer-live-p buf)
                             (with-current-buffer buf
                               (setq warren-list--timer nil)
                               (condition-case nil
                                   (funcall fn)
                                 (remote-file-error
                                  (warren-list--schedule buf delay fn)))))))))))

(defun warren-list--start-stream ()
  "Follow the daemon's events from this buffer: each one schedules a refresh.
The first line is the latest stored event (`-n 1'), so a refresh
always follows the start and nothing between the last fetch and
the subscription is missed."
  (unless (process-live-p warren-list--stream)
    (let ((buf (current-buffer)))
      (setq warren-list--stream
            (warren-start
             "warren-events" nil '("events" "-f" "-n" "1" "-o" "json")
             :context warren-context
             :filter (lambda (_proc _out)
                       (when (buffer-live-p buf)
                         (warren-list--schedule buf warren-list-refresh-delay
                                                (lambda () (revert-buffer)))))
             :sentinel (lambda (proc _event)
                         (when (and (not (process-live-p proc)) (buffer-live-p buf))
                           (with-current-buffer buf
                             (when (eq proc warren-list--stream)
                               (setq warren-list--stream nil)
                               ;; Ended by the daemon (restart, error): follow again.
                               (unless (process-get proc 'warren-stopped)
                                 (warren-list--schedule
                                  buf warren-list-reconnect-delay
                                  #'warren-list--sync-visibility)))))))))))

(defun warren-list--stop-stream ()
  "Stop following events from this buffer."
  (when (timerp warren-list--timer)
    (cancel-timer warren-list--timer)
    (setq warren-list--timer nil))
  (when (process-live-p warren-list--stream)
    (process-put warren-list--stream 'warren-stopped t)
    (delete-process warren-list--stream))
  (setq warren-list--stream nil))

(defun warren-list--sync-visibility (&rest _)
  "Follow events in the list buffers that are visible, and only in those.
A buffer shown again after being hidden is refreshed first."
  (setq warren-list--buffers (seq-filter #'buffer-live-p warren-list--buffers))
  (dolist (buf warren-list--buffers)
    (with-current-buffer buf
      (if (get-buffer-window buf t)
          (unless (process-live-p warren-list--stream)
            (warren-list--start-stream))
        (when (process-live-p warren-list--stream)
          (warren-list--stop-stream)))))
  (unless warren-list--buffers
    (remove-hook 'window-buffer-change-functions #'warren-list--sync-visibility)))

;;;; Marks and actions

(defun warren-list--targets ()
  "The marked workloads, or the one at point."
  (or (reverse warren-list--marked)
      (list (or (tabulated-list-get-id) (user-error "No workload on this line")))))

(defun warren-list--at-point ()
  "The workload at point."
  (or (tabulated-list-get-id) (user-error "No workload on this line")))

(defun warren-list-mark ()
  "Mark the workload at point and move down."
  (interactive)
  (let ((name (warren-list--at-point)))
    (cl-pushnew name warren-list--marked :test #'equal)
    (tabulated-list-put-tag "*" t)))

(defun warren-list-unmark ()
  "Unmark the workload at point and move down."
  (interactive)
  (let ((name (warren-list--at-point)))
    (setq warren-list--marked (delete name warren-list--marked))
    (tabulated-list-put-tag " " t)))

(defun warren-list-unmark-all ()
  "Unmark every workload."
  (interactive)
  (setq warren-list--marked nil)
  (save-excursion
    (goto-char (point-min))
    (while (not (eobp))
      (tabulated-list-put-tag " ")
      (forward-line 1))))

(defun warren-list--act (args what)
  "Run warren with ARGS without waiting, then refresh; WHAT names it in messages."
  (let ((buf (current-buffer)))
    (message "warren: %s..." what)
    (warren-run-async
     args
     (lambda (ok out)
       (message "warren: %s" (if (string-empty-p out) (concat what ": done") out))
       (unless ok (ding))
       (when (buffer-live-p buf)
         (with-current-buffer buf (revert-buffer))))
     warren-context)))

(defun warren-list--verb (verb)
  "Apply VERB (start, stop, restart) to the targeted workloads."
  (let ((names (warren-list--targets)))
    (warren-list--act (cons verb names)
                      (format "%s %s" verb (string-join names " ")))))

(defun warren-list-start ()
  "Start the marked workloads (or the one at point)."
  (interactive)
  (warren-list--verb "start"))

(defun warren-list-stop ()
  "Stop the marked workloads (or the one at point); they stay stopped."
  (interactive)
  (warren-list--verb "stop"))

(defun warren-list-restart ()
  "Restart the marked workloads (or the one at point)."
  (interactive)
  (warren-list--verb "restart"))

(defun warren-list-delete (purge)
  "Delete the marked workloads (or the one at point), after asking.
Their data is kept; with PURGE (a prefix argument) it is deleted too."
  (interactive "P")
  (let ((names (warren-list--targets)))
    (when (yes-or-no-p (format "Delete %s%s? " (string-join names ", ")
                               (if purge " and its data" "")))
      (warren-list--act (append '("delete") (and purge '("--purge")) names)
                        (format "delete %s" (string-join names " "))))))

(defun warren-list-snapshot (label)
  "Take a snapshot of the marked workloads (or the one at point), named LABEL.
An empty LABEL lets the daemon name it."
  (interactive (list (read-string "Snapshot label (empty for NAME-TIME): ")))
  (dolist (name (warren-list--targets))
    (warren-list--act (append (list "snapshot" name)
                              (unless (string-empty-p label) (list "--label" label)))
                      (format "snapshot %s" name))))

(defun warren-list-rollback (name snapshot force)
  "Roll workload NAME back to SNAPSHOT; FORCE (prefix) drops newer snapshots."
  (interactive
   (let* ((name (warren-list--at-point))
          (labels (mapcar (lambda (s) (alist-get 'label s))
                          (warren-json (list "snapshots" name "-o" "json") warren-context))))
     (unless labels (user-error "%s has no snapshots" name))
     (list name
           (completing-read (format "Roll %s back to: " name) labels nil t nil nil
                            (car (last labels)))
           current-prefix-arg)))
  (when (yes-or-no-p (format "Roll %s back to %s%s? " name snapshot
                             (if force " (destroying newer snapshots)" "")))
    (warren-list--act (append (list "rollback" name snapshot) (and force '("--force")))
                      (format "rollback %s to %s" name snapshot))))

(defun warren-list-logs ()
  "Show the output of the workload at point."
  (interactive)
  (warren-logs (warren-list--at-point) warren-context))

(defun warren-list-exec ()
  "Open a shell inside the workload at point."
  (interactive)
  (warren-exec (warren-list--at-point) warren-context))

(defun warren-list-describe ()
  "Describe the workload at point."
  (interactive)
  (warren-describe (warren-list--at-point) warren-context))

(defun warren-list-events ()
  "Show the daemon's events."
  (interactive)
  (warren-events warren-context))

(defun warren-list-info ()
  "Show the daemon host's information."
  (interactive)
  (warren-info warren-context))

(defun warren-list-repl ()
  "Open the daemon's Scheme REPL."
  (interactive)
  (warren-repl warren-context))

(transient-define-prefix warren-list-dispatch ()
  "Act on the marked workloads, or the one at point."
  [["Lifecycle"
    ("s" "Start" warren-list-start)
    ("o" "Stop" warren-list-stop)
    ("r" "Restart" warren-list-restart)
    ("D" "Delete" warren-list-delete)]
   ["Inspect"
    ("l" "Logs" warren-list-logs)
    ("d" "Describe" warren-list-describe)
    ("e" "Shell inside" warren-list-exec)
    ("E" "Events" warren-list-events)
    ("i" "Host info" warren-list-info)]
   ["Data"
    ("n" "Snapshot" warren-list-snapshot)
    ("b" "Roll back" warren-list-rollback)]
   ["List"
    ("m" "Mark" warren-list-mark)
    ("u" "Unmark" warren-list-unmark)
    ("U" "Unmark all" warren-list-unmark-all)
    ("g" "Refresh" revert-buffer)
    ("R" "REPL" warren-list-repl)]])

;;;###autoload
(defun warren-list (&optional context)
  "List the workloads of the daemon of CONTEXT (the local one when nil).
Interactively, CONTEXT is `warren-context'; with a prefix argument it
is read.  From a TRAMP directory, the remote host's CLI is used."
  (interactive (list (if current-prefix-arg (warren-read-context) warren-context)))
  (let* ((dir default-directory)
         (buf (get-buffer-create (warren-buffer-name "workloads" context))))
    (with-current-buffer buf
      (unless (derived-mode-p 'warren-list-mode)
        (setq default-directory dir)
        (warren-list-mode)
        (setq-local warren-context context))
      (revert-buffer))
    (pop-to-buffer-same-window buf)
    (warren-list--sync-visibility)
    buf))

(provide 'warren-list)
;;; warren-list.el ends here
