;;; warren-logs.el --- Logs, events, descriptions and shells of warren workloads  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors

;; Author: The warren authors
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The buffers that show one stream or one workload:
;;   `warren-logs'      `warren logs -f NAME' into a read-only buffer that follows new output
;;                      (`f' toggles following, `g' reloads)
;;   `warren-events'    `warren events -f', the daemon's events as they happen
;;   `warren-describe'  a workload's status, its spec and status as `warren get' prints them,
;;                      its snapshots and its recent events
;;   `warren-exec'      a shell inside a workload: vterm when installed, else term (local
;;                      directories) or comint
;;   `warren-info'      the daemon host's `warren info' (when the CLI has that command)

;;; Code:

(require 'warren)
(require 'comint)
(require 'ansi-color)

(autoload 'make-term "term")
(autoload 'term-mode "term")
(autoload 'term-char-mode "term")

(declare-function vterm "ext:vterm" (&optional arg))
(defvar vterm-shell)
(defvar vterm-buffer-name)

(defcustom warren-logs-tail 500
  "How many earlier lines `warren-logs' shows before following new ones."
  :type 'integer
  :group 'warren)

(defcustom warren-events-initial 50
  "How many stored events `warren-events' shows before the live ones."
  :type 'integer
  :group 'warren)

(defcustom warren-exec-terminal 'auto
  "Where `warren-exec' opens a shell: vterm, term, comint, or auto.
Auto means vterm when it is installed, else term for a local
`default-directory', else comint."
  :type '(choice (const auto) (const vterm) (const term) (const comint))
  :group 'warren)

(defcustom warren-exec-shell "/bin/sh"
  "The shell `warren-exec' runs inside a workload."
  :type 'string
  :group 'warren)

;;;; Streams into read-only buffers

(defvar-local warren-stream--args nil "The CLI arguments of this buffer's stream.")
(defvar-local warren-stream--follow t "Whether this buffer follows new output.")

(defvar warren-stream-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map special-mode-map)
    (define-key map "f" #'warren-stream-toggle-follow)
    map)
  "Keymap of `warren-stream-mode'.")

(define-derived-mode warren-stream-mode special-mode "Warren-Stream"
  "Major mode of buffers showing the output of a warren command as it comes.
\\<warren-stream-mode-map>\\[warren-stream-toggle-follow] toggles following, \\[revert-buffer] \
starts over.

\\{warren-stream-mode-map}"
  (setq-local revert-buffer-function #'warren-stream--revert)
  (setq-local mode-line-process '(:eval (warren-stream--mode-line))))

(defun warren-stream--mode-line ()
  "The mode-line state: following, ended or paused."
  (let ((p (get-buffer-process (current-buffer))))
    (cond ((process-live-p p) ":following")
          (warren-stream--follow ":ended")
          (t ":paused"))))

(defun warren-stream--filter (proc string)
  "Append STRING from PROC, keeping point at the end where it was at the end."
  (when (buffer-live-p (process-buffer proc))
    (with-current-buffer (process-buffer proc)
      (let* ((inhibit-read-only t)
             (mark (process-mark proc))
             (at-end (= (point) mark))
             (windows (seq-filter (lambda (w) (= (window-point w) mark))
                                  (get-buffer-window-list (current-buffer) nil t))))
        (save-excursion
          (goto-char mark)
          (insert (ansi-color-apply string))
          (set-marker mark (point)))
        (when at-end (goto-char mark))
        (dolist (w windows) (set-window-point w mark))))))

(defun warren-stream--revert (&rest _)
  "Start this buffer's command again from an empty buffer."
  (let ((old (get-buffer-process (current-buffer)))
        (inhibit-read-only t))
    (when old
      (set-process-sentinel old #'ignore)
      (delete-process old))
    (erase-buffer)
    (let ((proc (warren-start "warren-stream" (current-buffer)
                              (funcall warren-stream--args warren-stream--follow)
                              :context warren-context
                              :filter #'warren-stream--filter
                              :sentinel #'warren-stream--sentinel)))
      (set-marker (process-mark proc) (point-max)))))

(defun warren-stream--sentinel (proc event)
  "Note in PROC's buffer that it ended (EVENT), unless that was asked for."
  (when (and (not (process-live-p proc)) (buffer-live-p (process-buffer proc)))
    (with-current-buffer (process-buffer proc)
      (unless (eql (process-exit-status proc) 0)
        (let ((inhibit-read-only t))
          (save-excursion
            (goto-char (point-max))
            (insert (propertize (format "[%s]\n" (string-trim event)) 'face 'shadow))))))
    (force-mode-line-update t)))

(defun warren-stream-toggle-follow ()
  "Toggle following new output; starts over from the recent output when resumed."
  (interactive)
  (setq warren-stream--follow (not warren-stream--follow))
  (if warren-stream--follow
      (revert-buffer)
    (let ((p (get-buffer-process (current-buffer))))
      (when p
        (set-process-sentinel p #'ignore)
        (delete-process p))))
  (force-mode-line-update)
  (message "%s" (if warren-stream--follow "Following" "Paused")))

(defun warren-stream--open (name context args-fn)
  "Show buffer NAME streaming the CLI arguments ARGS-FN gives, for CONTEXT.
ARGS-FN is called with whether to follow."
  (let* ((dir default-directory)
         (buf (get-buffer-create name)))
    (with-current-buffer buf
      (unless (derived-mode-p 'warren-stream-mode)
        (setq default-directory dir)
        (warren-stream-mode))
      (setq-local warren-context context)
      (setq warren-stream--args args-fn)
      (unless (process-live-p (get-buffer-process buf))
        (revert-buffer)))
    (pop-to-buffer buf)
    buf))

;;;###autoload
(defun warren-logs (name &optional context)
  "Show the output of workload NAME of CONTEXT's daemon, following new lines."
  (interactive (list (warren-read-workload "Logs of") warren-context))
  (warren-stream--open
   (warren-buffer-name (concat "logs: " name) context) context
   (lambda (follow)
     (append (list "logs" "--tail" (number-to-string warren-logs-tail))
             (and follow '("--follow"))
             (list name)))))

;;;###autoload
(defun warren-events (&optional context)
  "Show the events of CONTEXT's daemon as they happen."
  (interactive (list warren-context))
  (warren-stream--open
   (warren-buffer-name "events" context) context
   (lambda (follow)
     (append (list "events" "-n" (number-to-string warren-events-initial))
             (and follow '("--follow"))))))

;;;; Describe

(defvar warren-describe-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map special-mode-map)
    (define-key map "l" #'warren-describe-logs)
    (define-key map "e" #'warren-describe-exec)
    map)
  "Keymap of `warren-describe-mode'.")

(define-derived-mode warren-describe-mode special-mode "Warren-Describe"
  "Major mode describing one workload.
\\<warren-describe-mode-map>\\[revert-buffer] reloads, \\[warren-describe-logs] shows its logs, \
\\[warren-describe-exec] opens a shell inside.")

(defvar-local warren-describe--name nil "The workload this buffer describes.")

(defun warren-describe--section (title)
  "Insert a section heading TITLE."
  (insert "\n" (propertize title 'face 'bold) "\n"))

(defun warren-describe--render ()
  "Fill the buffer with the description of `warren-describe--name'."
  (let* ((inhibit-read-only t)
         (name warren-describe--name)
         (detail (warren-json (list "get" name "-o" "json") warren-context))
         (yaml (warren-run (list "get" name) warren-context))
         (snaps (ignore-errors
                  (warren-run (list "snapshots" name) warren-context)))
         (events (ignore-errors
                   (warren-run (list "events" "--workload" name "-n" "10") warren-context)))
         (state (warren-field detail 'state)))
    (erase-buffer)
    (insert (propertize name 'face 'bold) "  "
            (propertize state 'face (warren-state-face state)))
    (dolist (f '(kind health address ports domains uptime restarts pid))
      (let ((v (warren-field detail f)))
        (unless (string-empty-p v)
          (insert (format "\n  %-9s %s" f v)))))
    (insert "\n")
    (warren-describe--section "Spec and status")
    (insert yaml)
    (when snaps
      (warren-describe--section "Snapshots")
      (insert snaps))
    (when events
      (warren-describe--section "Recent events")
      (insert events))
    (goto-char (point-min))))

;;;###autoload
(defun warren-describe (name &optional context)
  "Describe workload NAME of CONTEXT's daemon: status, spec, snapshots, events."
  (interactive (list (warren-read-workload "Describe") warren-context))
  (let* ((dir default-directory)
         (buf (get-buffer-create (warren-buffer-name (concat "describe: " name) context))))
    (with-current-buffer buf
      (setq default-directory dir)
      (warren-describe-mode)
      (setq-local warren-context context)
      (setq warren-describe--name name)
      (setq-local revert-buffer-function (lambda (&rest _) (warren-describe--render)))
      (warren-describe--render))
    (pop-to-buffer buf)
    buf))

(defun warren-describe-logs ()
  "Show the logs of the workload described here."
  (interactive)
  (warren-logs warren-describe--name warren-context))

(defun warren-describe-exec ()
  "Open a shell inside the workload described here."
  (interactive)
  (warren-exec warren-describe--name warren-context))

;;;; Info

(defun warren-info--insert (value indent)
  "Insert VALUE (parsed JSON) as indented lines at INDENT."
  (cond
   ((and (consp value) (consp (car value)) (symbolp (caar value)))
    (dolist (kv value)
      (let ((v (cdr kv)))
        (insert (make-string indent ?\s) (propertize (symbol-name (car kv)) 'face 'bold) ":")
        (if (and (consp v) (or (consp (car v)) (listp v)))
            (progn (insert "\n") (warren-info--insert v (+ indent 2)))
          (insert " " (if v (format "%s" v) "-") "\n")))))
   ((listp value)
    (dolist (v value)
      (if (consp v)
          (progn (insert (make-string indent ?\s) "-\n") (warren-info--insert v (+ indent 2)))
        (insert (make-string indent ?\s) (format "- %s\n" v)))))
   (t (insert (make-string indent ?\s) (format "%s\n" value)))))

(defun warren-info--render ()
  "Fill the buffer with `warren info', or say why there is none."
  (let ((inhibit-read-only t))
    (erase-buffer)
    (condition-case err
        (warren-info--insert (warren-json '("info" "-o" "json") warren-context) 0)
      (warren-error
       (insert (format "No host information from this daemon's CLI (%s).\n" (nth 2 err)))))
    (goto-char (point-min))))

;;;###autoload
(defun warren-info (&optional context)
  "Show what the host of CONTEXT's daemon is and how full it is (`warren info').
A CLI without the `info' command is reported in the buffer."
  (interactive (list warren-context))
  (let* ((dir default-directory)
         (buf (get-buffer-create (warren-buffer-name "info" context))))
    (with-current-buffer buf
      (setq default-directory dir)
      (special-mode)
      (setq-local warren-context context)
      (setq-local revert-buffer-function (lambda (&rest _) (warren-info--render)))
      (warren-info--render))
    (pop-to-buffer buf)
    buf))

;;;; Exec

;;;###autoload
(defun warren-exec (name &optional context)
  "Open a shell (`warren-exec-shell') inside workload NAME of CONTEXT's daemon.
See `warren-exec-terminal' for where."
  (interactive (list (warren-read-workload "Shell in") warren-context))
  (let* ((remote (file-remote-p default-directory))
         (how (if (eq warren-exec-terminal 'auto)
                  (cond ((require 'vterm nil t) 'vterm)
                        (remote 'comint)
                        (t 'term))
                warren-exec-terminal))
         (bufname (warren-buffer-name (concat "shell: " name) context)))
    (pcase how
      ('vterm
       (require 'vterm)
       (let ((vterm-shell (warren--command-line
                           (list "exec" "-t" name "--" warren-exec-shell) context))
             (vterm-buffer-name bufname))
         (vterm bufname)))
      ('term
       (let* ((args (warren--arguments (list "exec" "-t" name "--" warren-exec-shell) context))
              (buf (apply #'make-term (substring bufname 1 -1) warren-executable nil args)))
         (with-current-buffer buf
           (term-mode)
           (term-char-mode))
         (pop-to-buffer buf)
         buf))
      (_
       ;; No terminal: the shell reads lines from a pipe, so ask it to be interactive.
       (let ((buf (apply #'make-comint-in-buffer (substring bufname 1 -1) nil
                         warren-executable nil
                         (warren--arguments (list "exec" name "--" warren-exec-shell "-i")
                                            context))))
         (pop-to-buffer buf)
         buf)))))

(provide 'warren-logs)
;;; warren-logs.el ends here
