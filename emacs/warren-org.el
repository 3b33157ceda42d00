;;; warren-org.el --- Org dynamic blocks showing warren daemons  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors

;; Author: The warren authors
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Two org dynamic blocks, updated with C-c C-x C-u (`org-dblock-update'; with a prefix
;; argument, every block of the file) and inserted with C-c C-x x
;; (`org-dynamic-block-insert-dblock'):
;;
;;   #+BEGIN: warren-status :context prod :columns (name state health uptime)
;;   #+END:
;;
;; becomes a table of that daemon's workloads, one row each.  Parameters:
;;   :context    the CLI context (a remote daemon); absent for the local daemon
;;   :columns    which columns, of name kind state health address ports domains uptime
;;               restarts pid desired source generation (default `warren-org-columns')
;;   :match      a regexp the names of the workloads shown must match
;;   :directory  run the CLI there (a TRAMP directory runs a remote host's CLI)
;;
;;   #+BEGIN: warren-snapshots :context prod :workload db
;;   #+END:
;;
;; becomes a table of the workload's snapshots (label, when taken, size, manual or
;; automatic); without :workload, of every workload's (:match filters them).  With
;; :volume t, :workload names a volume.
;;
;; Several blocks with different contexts in one file make a fleet dashboard.  A daemon
;; that cannot be reached puts its error in its block and the other blocks still update.

;;; Code:

(require 'warren)
(require 'org)
(require 'org-table)

(defcustom warren-org-columns '(name kind state health uptime restarts)
  "The columns of a `warren-status' block without a :columns parameter."
  :type '(repeat (choice (const name) (const kind) (const state) (const health)
                         (const address) (const ports) (const domains) (const uptime)
                         (const restarts) (const pid) (const desired) (const source)
                         (const generation)))
  :group 'warren)

(defun warren-org--context (params)
  "The context named by PARAMS' :context (a symbol or string), or nil."
  (let ((c (plist-get params :context)))
    (and c (not (equal c "")) (format "%s" c))))

(defun warren-org--cell (value)
  "VALUE as the text of a table cell."
  (replace-regexp-in-string "|" "\\\\vert{}" (format "%s" value) t))

(defun warren-org--table (header rows)
  "Insert an aligned org table of HEADER (strings) and ROWS (lists of strings)."
  (let ((start (point)))
    (insert "| " (mapconcat #'identity header " | ") " |\n|-\n")
    (dolist (r rows)
      (insert "| " (mapconcat #'warren-org--cell r " | ") " |\n"))
    (goto-char start)
    (org-table-align)
    (goto-char (org-table-end))
    ;; The block's #+END: follows on its own line.
    (when (and (bolp) (not (bobp))) (delete-char -1))))

(defmacro warren-org--with-directory (params &rest body)
  "Run BODY with `default-directory' set from PARAMS' :directory."
  (declare (indent 1))
  `(let ((default-directory
          (let ((d (plist-get ,params :directory)))
            (if d (file-name-as-directory (format "%s" d)) default-directory))))
     ,@body))

(defun warren-org--matches (params name)
  "Whether workload NAME passes PARAMS' :match regexp."
  (let ((re (plist-get params :match)))
    (or (null re) (string-match-p (format "%s" re) name))))

;;;###autoload
(defun org-dblock-write:warren-status (params)
  "Write the `warren-status' dynamic block: a table of a daemon's workloads.
PARAMS are the block's parameters; see the commentary of warren-org.el."
  (let* ((context (warren-org--context params))
         (columns (or (plist-get params :columns) warren-org-columns))
         (with-spec (or (memq 'ports columns) (memq 'domains columns))))
    (condition-case err
        (let ((ws (warren-org--with-directory params
                    (warren-workloads context with-spec))))
          (warren-org--table
           (mapcar (lambda (c) (upcase (symbol-name c))) columns)
           (delq nil
                 (mapcar (lambda (w)
                           (when (warren-org--matches params (alist-get 'name w))
                             (mapcar (lambda (c) (warren-field w c)) columns)))
                         ws))))
      (warren-error
       (insert (format "error: %s" (nth 2 err)))))))

(defun warren-org--snapshot-row (workload snap)
  "The table row of snapshot SNAP of WORKLOAD."
  (let ((created (alist-get 'created_at snap))
        (bytes (alist-get 'bytes snap)))
    (list workload
          (alist-get 'label snap)
          (if created (format-time-string "%Y-%m-%d %H:%M" created) "")
          (if bytes (file-size-human-readable bytes) "")
          (if (alist-get 'automatic snap) "auto" "manual"))))

;;;###autoload
(defun org-dblock-write:warren-snapshots (params)
  "Write the `warren-snapshots' dynamic block: a table of snapshots.
PARAMS are the block's parameters; see the commentary of warren-org.el."
  (let ((context (warren-org--context params))
        (workload (plist-get params :workload))
        (volume (plist-get params :volume)))
    (condition-case err
        (warren-org--with-directory params
          (let* ((names (if workload
                            (list (format "%s" workload))
                          (seq-filter (lambda (n) (warren-org--matches params n))
                                      (warren-workload-names context))))
                 (rows (mapcan
                        (lambda (name)
                          (mapcar (lambda (s) (warren-org--snapshot-row name s))
                                  (warren-json (append (list "snapshots" name "-o" "json")
                                                       (and volume '("--volume")))
                                               context)))
                        names)))
            (warren-org--table (list (if volume "VOLUME" "WORKLOAD")
                                     "LABEL" "TAKEN" "SIZE" "KIND")
                               rows)))
      (warren-error
       (insert (format "error: %s" (nth 2 err)))))))

;;;###autoload
(defun warren-org-insert-status-block (&optional context)
  "Insert and fill a `warren-status' block for CONTEXT (read interactively)."
  (interactive (list (warren-read-context)))
  (org-create-dblock (append (list :name "warren-status")
                             (and context (list :context context))
                             (list :columns warren-org-columns)))
  (org-update-dblock))

;;;###autoload
(defun warren-org-insert-snapshots-block (&optional context workload)
  "Insert and fill a `warren-snapshots' block for WORKLOAD of CONTEXT.
Interactively both are read; an empty workload means all of them."
  (interactive
   (let ((ctx (warren-read-context)))
     (list ctx (let ((w (completing-read "Workload (empty for all): "
                                         (ignore-errors (warren-workload-names ctx)))))
                 (unless (string-empty-p w) w)))))
  (org-create-dblock (append (list :name "warren-snapshots")
                             (and context (list :context context))
                             (and workload (list :workload workload))))
  (org-update-dblock))

(org-dynamic-block-define "warren-status" #'warren-org-insert-status-block)
(org-dynamic-block-define "warren-snapshots" #'warren-org-insert-snapshots-block)

(provide 'warren-org)
;;; warren-org.el ends here
